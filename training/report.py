"""The evaluation report: metrics, segments, drift, oracle comparison, plots, HTML.

:func:`build_report` adds to a :class:`training.train.TrainResult`'s metrics the per-segment
AUCs, PSI from the training rows to the evaluation rows (score and every feature), the score
distribution per grade and, on simulated data, the oracle comparison; :func:`render_html`
draws the plots (calibration, score per grade, SHAP beeswarm, dependence, waterfalls) and writes
one self-contained HTML page.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.drift import psi, verdict
from training.cycle import cycle_plot, cycle_report, oracle_per_year
from training.metrics import calibration_table, safe_auc
from training.scale import load_config


def segment_labels(
    frame: pd.DataFrame, spec: dict[str, Any], reference: pd.DataFrame
) -> pd.Series | None:
    """Segment of every row per a config entry, or ``None`` when the columns are absent."""
    if "column" in spec:
        col = spec["column"]
        if col not in frame.columns:
            return None
        if "quantiles" in spec:
            edges = np.unique(
                np.nanquantile(
                    pd.to_numeric(reference[col]),
                    np.linspace(0, 1, int(spec["quantiles"]) + 1)[1:-1],
                )
            )
            band = np.searchsorted(
                edges, pd.to_numeric(frame[col]).to_numpy(dtype=float), side="right"
            )
            labels = pd.Series([f"Q{b + 1}" for b in band], index=frame.index)
            return labels.where(frame[col].notna(), "missing")
        return frame[col].astype(object).fillna("missing").astype(str)
    if "argmax_of" in spec:
        cols = [c for c in spec["argmax_of"] if c in frame.columns]
        if not cols:
            return None
        values = frame[cols].astype(float)
        labels = values.fillna(-1).idxmax(axis=1).str.replace(r"^share_|_12m$", "", regex=True)
        return labels.where(values.fillna(0).sum(axis=1) > 0, "none")
    return None


def segment_aucs(
    eval_frame: pd.DataFrame,
    train_frame: pd.DataFrame,
    segments: dict[str, Any],
    min_rows: int,
    min_defaults: int,
) -> dict[str, list[dict[str, Any]]]:
    """AUC per segment value (``None`` when too few rows or defaults)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, spec in segments.items():
        labels = segment_labels(eval_frame, spec, train_frame)
        if labels is None:
            continue
        rows = []
        for value, idx in eval_frame.groupby(labels.to_numpy(), observed=True).groups.items():
            sub = eval_frame.loc[idx]
            n, d = len(sub), int(sub["label"].sum())
            ok = n >= min_rows and d >= min_defaults and d < n
            rows.append(
                {
                    "segment": str(value),
                    "n": n,
                    "defaults": d,
                    "auc": safe_auc(sub["label"], sub["pd"]) if ok else None,
                    "mean_pd": float(sub["pd"].mean()),
                    "default_rate": d / n,
                }
            )
        out[name] = rows
    return out


def read_oracle(oracle_dir: Path | str) -> pd.DataFrame:
    """Read the simulator's true 12-month PDs (``usc_code, as_of, pd_12m``)."""
    parts = sorted(Path(oracle_dir, "true_pd").glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(
            f"oracle folder {oracle_dir} must hold true_pd/part-*.parquet; it does not"
        )
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame[["usc_code", "as_of", "pd_12m"]]


def oracle_comparison(eval_frame: pd.DataFrame, oracle: pd.DataFrame) -> dict[str, Any]:
    """Oracle AUC on the evaluation rows and the agreement of predicted with true PD."""
    from scipy.stats import pearsonr, spearmanr

    frame = eval_frame[["usc_code", "as_of", "label", "pd"]].copy()
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    joined = frame.merge(oracle, on=["usc_code", "as_of"], how="inner")
    if joined.empty:
        return {"matched_rows": 0}
    t = joined["pd_12m"].clip(1e-6, 1 - 1e-6)
    p = joined["pd"].clip(1e-6, 1 - 1e-6)
    model_auc = safe_auc(joined["label"], p)
    oracle_auc = safe_auc(joined["label"], t)
    return {
        "matched_rows": len(joined),
        "unmatched_rows": len(frame) - len(joined),
        "oracle_auc": oracle_auc,
        "model_auc_on_matched": model_auc,
        "auc_gap": None if oracle_auc is None or model_auc is None else oracle_auc - model_auc,
        "pearson_pd": float(pearsonr(p, t).statistic),
        "pearson_log_odds": float(pearsonr(np.log(p / (1 - p)), np.log(t / (1 - t))).statistic),
        "spearman_pd": float(spearmanr(p, t).statistic),
        "mean_true_pd": float(t.mean()),
        "mean_pred_pd": float(p.mean()),
    }


def build_report(
    result: Any, oracle_dir: Path | str | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the metrics JSON: the training metrics plus segments, PSI, grades and the oracle.

    Parameters
    ----------
    result : training.train.TrainResult
    oracle_dir : Path or str, optional
        Simulator oracle folder (``true_pd/part-*.parquet``).
    config : dict, optional
        Model configuration.

    Returns
    -------
    dict
        JSON-ready.
    """
    full = config or load_config()
    cfg = full["report"]
    model = result.model
    ev, tr = result.eval_frame, result.train_frame
    report = dict(result.metrics)
    cycle = cycle_report(result, full)
    if cycle is not None:
        report["cycle"] = cycle
    if report.get("protocol", {}).get("kind") == "out_of_time":
        # PSI compares the training window with the later test window; cross-validation has
        # no later window (its evaluation rows are the training rows), so it has no PSI.
        report["psi"] = _psi_section(model, tr, ev, int(cfg["psi_bins"]))
    segments = segment_aucs(
        ev,
        tr,
        cfg.get("segments", {}),
        int(cfg["min_segment_rows"]),
        int(cfg["min_segment_defaults"]),
    )
    if segments:
        report["segments"] = segments
    eval_score = model.score_scale.score(np.clip(ev["pd"].to_numpy(), model.pd_floor, 1 - 1e-12))
    grades = model.master_scale.grade(np.clip(ev["pd"].to_numpy(), model.pd_floor, 1.0))
    per_grade = []
    for band in model.master_scale.bands:
        mask = grades == band.grade
        n = int(mask.sum())
        per_grade.append(
            {
                "grade": band.grade,
                "supervision_class": band.supervision_class,
                "pd_band": [band.lower, band.upper],
                "n": n,
                "share": n / len(ev),
                "defaults": int(ev["label"].to_numpy()[mask].sum()),
                "default_rate": float(ev["label"].to_numpy()[mask].mean()) if n else None,
                "mean_pd": float(ev["pd"].to_numpy()[mask].mean()) if n else None,
                "score_range": [float(eval_score[mask].min()), float(eval_score[mask].max())]
                if n
                else None,
            }
        )
    report["grades"] = per_grade
    crowded = max(per_grade, key=lambda g: g["share"])
    if crowded["share"] > 0.5:
        report["grades_note"] = (
            f"{crowded['share']:.0%} of the rows land in grade {crowded['grade']} of the master "
            f"scale (PD bands {model.master_scale.to_list()[0]['upper']}…1); the scale does not "
            f"fit a table whose default rate is {float(ev['label'].mean()):.1%}: give the table "
            "its own scale (kuaxin train --master-scale FILE)"
        )
    report["calibration_table"] = calibration_table(
        ev["label"], ev["pd"], int(cfg["calibration_bins"])
    ).to_dict("records")
    if oracle_dir is not None and "usc_code" in ev.columns:
        oracle = read_oracle(oracle_dir)
        report["oracle"] = oracle_comparison(ev, oracle)
        if "cycle" in report:
            report["cycle"]["oracle_out_of_time"] = oracle_per_year(ev, oracle, full)
    return report


def _psi_section(model: Any, tr: pd.DataFrame, ev: pd.DataFrame, bins: int) -> dict[str, Any]:
    """PSI of the score and of every feature from the training to the evaluation rows."""
    train_score = model.score(tr, num_threads=1)["score"]
    eval_score = model.score_scale.score(np.clip(ev["pd"].to_numpy(), model.pd_floor, 1 - 1e-12))
    score_psi = psi(train_score, pd.Series(eval_score), bins)
    feature_psi = {n: psi(tr[n], ev[n], bins) for n in model.feature_names}
    return {
        "reference": "training rows",
        "current": "evaluation rows",
        "score": {"psi": score_psi, "verdict": verdict(score_psi)},
        "features": {
            n: {"psi": v, "verdict": verdict(v)}
            for n, v in sorted(feature_psi.items(), key=lambda kv: -kv[1])
        },
    }


# ---------------------------------------------------------------------------- HTML
def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(
    result: Any, report: dict[str, Any], config: dict[str, Any] | None = None
) -> dict[str, str]:
    """Report figures as base64 PNGs: calibration, score per grade, SHAP beeswarm, dependence, waterfalls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    cfg = (config or load_config())["report"]
    model, ev = result.model, result.eval_frame
    out: dict[str, str] = {}
    table = pd.DataFrame(report["calibration_table"])
    fig, ax = plt.subplots(figsize=(5, 4))
    top = max(table["mean_pd"].max(), table["default_rate"].max()) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="perfect")
    ax.plot(table["mean_pd"], table["default_rate"], "o-", label="LightGBM (calibrated)")
    ax.set_xlabel("mean predicted PD")
    ax.set_ylabel("observed default rate")
    ax.set_title("Calibration (PD deciles)")
    ax.legend()
    out["calibration"] = _png(fig)
    if report.get("cycle"):
        out["calibration_per_year"] = _png(cycle_plot(report["cycle"]))

    score = model.score_scale.score(np.clip(ev["pd"].to_numpy(), model.pd_floor, 1 - 1e-12))
    grades = model.master_scale.grade(np.clip(ev["pd"].to_numpy(), model.pd_floor, 1.0))
    fig, ax = plt.subplots(figsize=(7, 4))
    order = [g for g in model.master_scale.grades if (grades == g).any()]
    ax.boxplot([score[grades == g] for g in order], tick_labels=order)
    ax.set_xlabel("grade")
    ax.set_ylabel("score")
    ax.set_title("Score distribution per grade")
    out["score_by_grade"] = _png(fig)

    rows = ev.head(int(cfg.get("shap_rows", 2000)))
    contrib, base = model.explain(rows, num_threads=1)
    data = model.matrix(rows)
    expl = shap.Explanation(
        values=contrib, base_values=base, data=data, feature_names=model.feature_names
    )
    shap.plots.beeswarm(expl, max_display=15, show=False)
    out["shap_beeswarm"] = _png(plt.gcf())
    top_idx = np.argsort(-np.abs(contrib).mean(0))[: int(cfg["dependence_top"])]
    for j in top_idx:
        shap.plots.scatter(expl[:, int(j)], show=False)
        out[f"dependence_{model.feature_names[j]}"] = _png(plt.gcf())
    # Waterfalls: the riskiest, a median and the safest row.
    pdv = rows["pd"].to_numpy()
    picks = [int(np.argmax(pdv)), int(np.argsort(pdv)[len(pdv) // 2]), int(np.argmin(pdv))][
        : int(cfg["sample_firms"])
    ]
    for k, i in enumerate(picks):
        shap.plots.waterfall(expl[i], max_display=10, show=False)
        label = (
            str(rows.iloc[i]["usc_code"]) if "usc_code" in rows.columns else f"row {rows.index[i]}"
        )
        out[f"waterfall_{k}_{label}"] = _png(plt.gcf())
    return out


def render_html(
    result: Any,
    report: dict[str, Any],
    config: dict[str, Any] | None = None,
    figures: dict[str, str] | None = None,
) -> str:
    """One self-contained HTML page with the metrics tables and the plots (drawn if not given)."""
    from jinja2 import Template

    if figures is None:
        figures = plots(result, report, config)
    template = Template(_TEMPLATE)
    return template.render(
        r=report,
        figures=figures,
        esc=html.escape,
        fmt=lambda v: "—" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)),
        headline=_headline(report),
    )


def _headline(report: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    if "lightgbm" in report:
        t, c = report["lightgbm"]["test"], report["challenger"]["test"]
        for k in ("auc", "gini", "ks", "brier", "log_loss", "ece"):
            rows.append((k, (t[k], c[k])))
    else:
        for k in ("defaults", "tuned", "challenger"):
            rows.append((f"{k} mean CV AUC", (report[k]["mean_auc"], report[k]["std_auc"])))
            rows.append((f"{k} pooled OOF AUC", (report[k]["pooled_oof_auc"], None)))
        for k in ("auc", "brier", "log_loss", "ece"):
            rows.append((f"calibrated OOF {k}", (report["calibrated_oof"][k], None)))
    return rows


_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>Kuaxin model report</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>
<h1>Kuaxin credit model — evaluation report</h1>
<p>Model version {{ r.model_version }} · data fingerprint {{ r.data_fingerprint }}</p>
<h2>Protocol</h2><p>{{ esc(r.protocol.description) }}</p>
<h2>Headline</h2><table><tr><th>metric</th><th>LightGBM / value</th><th>challenger / sd</th></tr>
{% for k, v in headline %}<tr><td>{{ k }}</td><td>{{ fmt(v[0]) }}</td><td>{{ fmt(v[1]) }}</td></tr>{% endfor %}</table>
{% if r.oracle %}<h2>Oracle (simulated data)</h2><table>{% for k, v in r.oracle.items() %}<tr><td>{{ k }}</td><td>{{ fmt(v) }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.cycle %}<h2>Through the cycle (per as-of year)</h2><p>{{ esc(r.cycle.description) }}</p>
<table><tr><th>window</th><th>year</th><th>n</th><th>defaults</th><th>default rate</th><th>mean PD</th><th>observed / PD</th><th>AUC</th><th>ECE</th><th>challenger AUC / ECE</th></tr>
{% for w in ["in_sample", "out_of_time"] %}{% for y in r.cycle.get(w, []) %}<tr><td>{{ w }}</td><td>{{ y.year }}</td><td>{{ y.n }}</td><td>{{ y.defaults }}</td><td>{{ fmt(y.default_rate) }}</td><td>{{ fmt(y.mean_pd) }}</td><td>{{ fmt(y.ratio_observed_to_pd) }}</td><td>{{ fmt(y.auc) }}</td><td>{{ fmt(y.ece) }}</td><td>{% if y.challenger_auc is defined %}{{ fmt(y.challenger_auc) }} / {{ fmt(y.challenger_ece) }}{% endif %}</td></tr>{% endfor %}{% endfor %}
{% for y in r.cycle.get("oracle_out_of_time", []) %}<tr><td>oracle</td><td>{{ y.year }}</td><td>{{ y.n }}</td><td>{{ y.defaults }}</td><td>{{ fmt(y.default_rate) }}</td><td>{{ fmt(y.mean_pd) }}</td><td>{{ fmt(y.ratio_observed_to_pd) }}</td><td>{{ fmt(y.auc) }}</td><td>{{ fmt(y.ece) }}</td><td></td></tr>{% endfor %}</table>
{% if r.cycle.modes %}<h3>Calibration level: {{ r.cycle.calibration.mode }} (long-run default rate {{ fmt(r.cycle.calibration.long_run_default_rate) }}, TTC shift {{ fmt(r.cycle.calibration.ttc_shift) }} log-odds)</h3>
<table><tr><th>mode</th><th>test ECE</th><th>test mean PD</th>{% for y in r.cycle.modes.point_in_time.years %}<th>{{ y.year }} mean PD / ECE</th>{% endfor %}</tr>
{% for name, m in r.cycle.modes.items() %}<tr><td>{{ name }}</td><td>{{ fmt(m.ece) }}</td><td>{{ fmt(m.mean_pd) }}</td>{% for y in m.years %}<td>{{ fmt(y.mean_pd) }} / {{ fmt(y.ece) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}{% endif %}
<h2>Grades</h2><table><tr><th>grade</th><th>class</th><th>n</th><th>defaults</th><th>default rate</th><th>mean PD</th></tr>
{% for g in r.grades %}<tr><td>{{ g.grade }}</td><td>{{ g.supervision_class }}</td><td>{{ g.n }}</td><td>{{ g.defaults }}</td><td>{{ fmt(g.default_rate) }}</td><td>{{ fmt(g.mean_pd) }}</td></tr>{% endfor %}</table>
{% if r.grades_note %}<p><b>Note:</b> {{ esc(r.grades_note) }}</p>{% endif %}
{% for name, img in figures.items() %}<h3>{{ name }}</h3><img src="data:image/png;base64,{{ img }}">{% endfor %}
{% if r.segments %}<h2>AUC per segment</h2>{% for seg, rows in r.segments.items() %}<h3>{{ seg }}</h3><table><tr><th>value</th><th>n</th><th>defaults</th><th>AUC</th><th>mean PD</th><th>default rate</th></tr>
{% for s in rows %}<tr><td>{{ esc(s.segment) }}</td><td>{{ s.n }}</td><td>{{ s.defaults }}</td><td>{{ fmt(s.auc) }}</td><td>{{ fmt(s.mean_pd) }}</td><td>{{ fmt(s.default_rate) }}</td></tr>{% endfor %}</table>{% endfor %}{% endif %}
{% if r.psi %}<h2>PSI (training → evaluation)</h2><p>score: {{ fmt(r.psi.score.psi) }} ({{ r.psi.score.verdict }})</p><table><tr><th>feature</th><th>PSI</th><th>verdict</th></tr>
{% for n, v in r.psi.features.items() %}<tr><td>{{ n }}</td><td>{{ fmt(v.psi) }}</td><td>{{ v.verdict }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>"""


def write_metrics(report: dict[str, Any], path: Path | str) -> Path:
    """Write the metrics JSON (numpy values converted)."""
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        json.dumps(report, indent=2, default=_default, ensure_ascii=False), encoding="utf-8"
    )
    return p


def _default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
