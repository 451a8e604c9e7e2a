"""Monitoring and backtesting a trained model on past snapshots (``kuaxin monitor``).

Given a model, feature snapshots of past as-of dates and, once they are known, the outcomes
(each firm's first default date), :func:`monitor` scores every period and reports:

- per period and grade of the master scale: firms, defaults, mean PD, observed default rate, and
  the one-sided binomial and Jeffreys tests of "the grade's default rate is at most its PD" with
  a traffic light, as the ECB guide to internal models backtests each grade; the same for the
  whole portfolio;
- AUC per period (discrimination over time);
- PSI of the score and of each model feature per period against a reference sample (the
  snapshot rows inside the model's own training window when there are any, else the first
  period, or a file given with ``--reference``);
- a plain-language verdict: ``fine``, ``recalibrate`` (ranking holds, PD level is off) or
  ``retrain`` (ranking or population moved).

Thresholds live in ``training/config/monitor.yaml`` (PSI bands in ``features/config/drift.yaml``).
:func:`render_html` draws the report, :func:`log_monitor` logs it to MLflow against the model
version. Firms already in default at an as-of date are not scored for that period (the model
never grades them, as in the training labels).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import beta, binom

from features.drift import load_drift_bands
from features.drift import verdict as psi_verdict
from training.metrics import safe_auc

MONITOR_CONFIG_PATH = Path(__file__).parent / "config" / "monitor.yaml"
LIGHTS = ("green", "yellow", "red")


# ---------------------------------------------------------------------------- configuration
class TrafficLights(BaseModel):
    """Which test sets the light and its confidence levels."""

    model_config = ConfigDict(extra="forbid")

    light_test: Literal["jeffreys", "binomial"] = "jeffreys"
    yellow_confidence: float = Field(gt=0.5, lt=1)
    red_confidence: float = Field(gt=0.5, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> TrafficLights:
        if self.red_confidence <= self.yellow_confidence:
            raise ValueError("red_confidence must exceed yellow_confidence")
        return self


class VerdictRules(BaseModel):
    """Thresholds of the plain-language verdict."""

    model_config = ConfigDict(extra="forbid")

    periods: int = Field(default=1, ge=1)
    auc_drop: float = Field(gt=0, lt=0.5)
    feature_share: float = Field(gt=0, le=1)
    red_share: float = Field(gt=0, le=1)
    min_defaults_for_auc: int = Field(default=10, ge=1)


class MonitorConfig(BaseModel):
    """``training/config/monitor.yaml``."""

    model_config = ConfigDict(extra="forbid")

    horizon_months: int = Field(default=12, ge=1)
    traffic_lights: TrafficLights
    psi_bins: int = Field(default=10, ge=2)
    verdict: VerdictRules
    experiment: str = Field(default="kuaxin-monitor", min_length=1)


def load_monitor_config(path: Path | str | None = None) -> MonitorConfig:
    """Load and validate the monitoring configuration.

    Raises
    ------
    ValueError
        The file is missing or invalid (the message names the file and the field).
    """
    p = Path(path) if path is not None else MONITOR_CONFIG_PATH
    if not p.is_file():
        raise ValueError(f"monitor configuration {p} must exist; it does not")
    try:
        return MonitorConfig.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))
    except Exception as exc:  # YAML or validation errors: one message naming the file
        raise ValueError(f"monitor configuration {p} is not valid: {exc}") from exc


# ---------------------------------------------------------------------------- statistics
def binomial_pvalue(defaults: int, n: int, pd_: float) -> float:
    """One-sided binomial test p-value ``P(X >= defaults)`` for ``X ~ Binomial(n, pd_)``.

    Small values reject "the default rate is at most ``pd_``" (the PD is too low).
    """
    if n <= 0:
        raise ValueError(f"n must be positive; got {n}")
    if not 0 <= defaults <= n:
        raise ValueError(f"defaults must be in [0, n]; got {defaults} of {n}")
    return float(binom.sf(defaults - 1, n, pd_))


def jeffreys_pvalue(defaults: int, n: int, pd_: float) -> float:
    """One-sided Jeffreys test p-value: ``Beta(defaults + 1/2, n - defaults + 1/2).cdf(pd_)``.

    The posterior probability, under the Jeffreys prior, that the true default rate is at most
    ``pd_`` (ECB instructions for reporting validation results, PD back-testing).
    """
    if n <= 0:
        raise ValueError(f"n must be positive; got {n}")
    if not 0 <= defaults <= n:
        raise ValueError(f"defaults must be in [0, n]; got {defaults} of {n}")
    return float(beta.cdf(pd_, defaults + 0.5, n - defaults + 0.5))


def traffic_light(pvalue: float, lights: TrafficLights) -> str:
    """``green`` / ``yellow`` / ``red`` for a one-sided p-value."""
    if pvalue < 1 - lights.red_confidence:
        return "red"
    if pvalue < 1 - lights.yellow_confidence:
        return "yellow"
    return "green"


def backtest_cell(y: np.ndarray, p: np.ndarray, lights: TrafficLights) -> dict[str, Any]:
    """Firms, defaults, mean PD, observed rate, both p-values and the light of one group."""
    n, d = len(y), int(np.sum(y))
    if n == 0:
        return {"n": 0, "defaults": 0, "mean_pd": None, "default_rate": None, "light": None}
    mean_pd = float(np.mean(p))
    tests = {"binomial": binomial_pvalue(d, n, mean_pd), "jeffreys": jeffreys_pvalue(d, n, mean_pd)}
    return {
        "n": n,
        "defaults": d,
        "mean_pd": mean_pd,
        "default_rate": d / n,
        "expected_defaults": n * mean_pd,
        "binomial_p": tests["binomial"],
        "jeffreys_p": tests["jeffreys"],
        "light": traffic_light(tests[lights.light_test], lights),
    }


# ---------------------------------------------------------------------------- inputs
def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"snapshots folder {path} must hold *.parquet files; it holds none"
            )
        return files
    if not path.is_file():
        raise FileNotFoundError(
            f"snapshots {path} must be a Parquet file or folder; it does not exist"
        )
    return [path]


def read_snapshots(path: Path | str) -> pd.DataFrame:
    """Read snapshots from a Parquet file or a folder of them.

    ``kuaxin features`` files or a ``kuaxin dataset`` file (its labels are dropped: outcomes
    come from ``--outcomes``); each row needs ``usc_code`` and ``as_of``.
    """
    files = _parquet_files(Path(path))
    frames = [pd.read_parquet(p) for p in files]
    for f, p in zip(frames, files, strict=True):
        for col in ("usc_code", "as_of"):
            if col not in f.columns:
                raise ValueError(f"snapshot {p} must have column {col!r}; it does not")
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    out["as_of"] = pd.to_datetime(out["as_of"])
    out["usc_code"] = out["usc_code"].astype(str)
    dup = out.duplicated(["usc_code", "as_of"])
    if dup.any():
        raise ValueError(
            f"snapshots must have one row per (usc_code, as_of); {int(dup.sum())} repeat"
        )
    return out.drop(columns=[c for c in ("label", "default_date") if c in out.columns])


def read_outcomes(
    path: Path | str, observed_to: str | pd.Timestamp | None = None
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Each firm's first default date and the date up to which outcomes are observed.

    Parameters
    ----------
    path : Path or str
        A clean-tables folder (``kuaxin ingest`` output: defaults from ``loan_repayments`` and
        ``court_records`` by the one default definition), or a Parquet/CSV file with
        ``usc_code, default_date``.
    observed_to : str or Timestamp, optional
        Last date the outcomes cover. Defaults to the end of the last ``loan_repayments`` month
        of a clean folder; required for a file.

    Returns
    -------
    tuple
        ``(events with usc_code, default_date; observed_to)``.
    """
    p = Path(path)
    if p.is_dir():
        from features.dataset import _last_observed, default_events
        from features.snapshot import CleanTables

        tables = CleanTables(p)
        events = default_events(tables)
        last = _last_observed(tables)
        if observed_to is None:
            if last is None:
                raise ValueError(f"outcomes folder {p} has no loan_repayments; give --observed-to")
            observed_to = last
    elif p.is_file():
        events = pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)
        for col in ("usc_code", "default_date"):
            if col not in events.columns:
                raise ValueError(f"outcomes file {p} must have column {col!r}; it does not")
        if observed_to is None:
            raise ValueError(f"outcomes file {p} needs --observed-to (the last date it covers)")
        events = events.assign(
            usc_code=events["usc_code"].astype(str),
            default_date=pd.to_datetime(events["default_date"]),
        )
        events = events.groupby("usc_code", as_index=False)["default_date"].min()
    else:
        raise FileNotFoundError(f"outcomes {p} must be a clean folder or a file; it does not exist")
    return events[["usc_code", "default_date"]], pd.Timestamp(observed_to)


def load_model(spec: str, tracking_uri: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load a model from a folder or a registry URI (``models:/name/3``, ``models:/name@champion``).

    Returns
    -------
    tuple
        ``(CreditModel, {"name", "registered_version", "model_version", "source"})``; for a
        folder exported by ``kuaxin export`` the registered name and version come from its
        ``registry.json``.
    """
    from training.model import CreditModel

    info: dict[str, Any] = {"source": spec, "name": None, "registered_version": None}
    if spec.startswith("models:/"):
        from training.registry import _alias_version, _client, load_version

        name, _, rest = spec.removeprefix("models:/").partition("@")
        if rest:
            version = _alias_version(_client(tracking_uri), name, rest)
            if version is None:
                raise ValueError(f"registered model {name!r} has no alias {rest!r}")
        else:
            name, _, version = name.partition("/")
            if not version:
                raise ValueError(
                    f"model URI {spec!r} must be models:/NAME/VERSION or models:/NAME@ALIAS"
                )
        model = load_version(name, version=version, tracking_uri=tracking_uri)
        info.update(name=name, registered_version=str(version))
    else:
        if not Path(spec).is_dir():
            raise FileNotFoundError(f"model {spec} must be a model folder or a models:/ URI")
        model = CreditModel.load(spec)
        exported = Path(spec) / "registry.json"  # written by `kuaxin export`
        if exported.is_file():
            import json

            reg = json.loads(exported.read_text(encoding="utf-8"))
            info.update(name=reg.get("name"), registered_version=str(reg.get("version")))
    info["model_version"] = model.version
    return model, info


# ---------------------------------------------------------------------------- scoring
def score_periods(
    model: Any,
    snapshots: pd.DataFrame,
    events: pd.DataFrame | None,
    observed_to: pd.Timestamp | None,
    horizon_months: int,
    progress: bool = False,
) -> pd.DataFrame:
    """Score every period and attach outcomes where complete.

    Returns
    -------
    DataFrame
        The snapshot rows of firms not in default at their as-of date, plus ``pd``, ``score``,
        ``grade``, ``complete`` (outcome window observed) and ``label`` (NaN when incomplete).
    """
    dd = None
    if events is not None:
        dd = snapshots["usc_code"].map(events.set_index("usc_code")["default_date"])
        keep = ~(pd.to_datetime(dd) <= snapshots["as_of"]).to_numpy()
        snapshots, dd = snapshots.loc[keep], pd.to_datetime(dd[keep])
    scored = model.score(snapshots, num_threads=1)
    out = snapshots.assign(pd=scored["pd"], score=scored["score"], grade=scored["grade"])
    end = out["as_of"] + pd.DateOffset(months=horizon_months)
    complete = (
        (end <= observed_to).to_numpy()
        if events is not None and observed_to is not None
        else np.zeros(len(out), dtype=bool)
    )
    out["complete"] = complete
    out["label"] = np.nan
    if dd is not None:
        label = ((dd > out["as_of"]) & (dd <= end)).astype(float)
        out["label"] = label.where(complete, np.nan)
    return out


def drift_table(
    model: Any, scored: pd.DataFrame, ref: pd.DataFrame, bins: int, progress: bool = False
) -> dict[str, dict[Any, float]]:
    """PSI per period of the score and of every model feature against ``ref``.

    Returns
    -------
    dict
        ``{"score" or feature: {"YYYY-MM-DD": psi}}``.
    """
    from tqdm.auto import tqdm

    from features.drift import psi_by_group

    periods = scored["as_of"].dt.strftime("%Y-%m-%d").to_numpy()
    ref_score = pd.Series(model.score(ref, num_threads=1)["score"].to_numpy())
    out = {"score": psi_by_group(ref_score, scored["score"].reset_index(drop=True), periods, bins)}
    for n in tqdm(model.feature_names, desc="PSI per feature", disable=not progress):
        out[n] = psi_by_group(ref[n], scored[n], periods, bins)
    return out


# ---------------------------------------------------------------------------- the report
def _reference(
    model: Any, scored: pd.DataFrame, reference: pd.DataFrame | None
) -> tuple[pd.DataFrame, str]:
    """Pick the PSI reference sample and describe it."""
    if reference is not None:
        return reference, "the given reference file"
    windows = model.metadata.get("windows") or {}
    fitted_end = (windows.get("validation") or windows.get("train") or [None, None])[1]
    if fitted_end is not None:
        inside = scored.loc[scored["as_of"] <= pd.Timestamp(fitted_end)]
        if len(inside):
            return inside, f"snapshot rows inside the model's training window (to {fitted_end})"
    first = scored["as_of"].min()
    return scored.loc[scored["as_of"] == first], f"the first period ({first.date()})"


def _period(
    model: Any,
    rows: pd.DataFrame,
    drift: dict[str, dict[Any, float]],
    cfg: MonitorConfig,
    fitted_end: pd.Timestamp | None,
) -> dict[str, Any]:
    t = pd.Timestamp(rows["as_of"].iloc[0])
    key = t.strftime("%Y-%m-%d")
    bands = load_drift_bands()
    score_psi = drift["score"][key]
    features = {n: drift[n][key] for n in model.feature_names}
    out: dict[str, Any] = {
        "as_of": str(t.date()),
        "n": len(rows),
        "mean_pd": float(rows["pd"].mean()),
        "in_model_window": bool(fitted_end is not None and t <= fitted_end),
        "complete": bool(rows["complete"].iloc[0]),
        "psi": {
            "score": score_psi,
            "score_verdict": psi_verdict(score_psi, bands),
            "features": features,
            "significant_features": sorted(
                n for n, v in features.items() if psi_verdict(v, bands) == "significant"
            ),
        },
    }
    if not out["complete"]:
        return out
    return out | grade_backtest(rows, model.master_scale, cfg)


def grade_backtest(rows: pd.DataFrame, master_scale: Any, cfg: MonitorConfig) -> dict[str, Any]:
    """Backtest one period's rows with known outcomes, per grade and for the whole portfolio.

    Parameters
    ----------
    rows : DataFrame
        ``pd``, ``grade`` and 0/1 ``label`` of one period (any PD source: a model, the oracle).
    master_scale : MasterScale
        Grades in order, with their supervision classes.
    cfg : MonitorConfig

    Returns
    -------
    dict
        ``defaults``, ``default_rate``, ``auc``, ``portfolio`` and ``grades`` (see
        :func:`backtest_cell`), and ``lights`` (count of each light over the tested grades).
    """
    y, p = rows["label"].to_numpy(dtype=int), rows["pd"].to_numpy()
    lights = cfg.traffic_lights
    grades = rows["grade"].to_numpy()
    cells = [
        {"grade": g, "supervision_class": master_scale.supervision_class(g)}
        | backtest_cell(y[grades == g], p[grades == g], lights)
        for g in master_scale.grades
    ]
    tested = [g for g in cells if g["light"] is not None]
    return {
        "defaults": int(y.sum()),
        "default_rate": float(y.mean()),
        "auc": safe_auc(y, p) if y.sum() >= cfg.verdict.min_defaults_for_auc else None,
        "portfolio": backtest_cell(y, p, lights),
        "grades": cells,
        "lights": {k: sum(g["light"] == k for g in tested) for k in LIGHTS},
    }


Reason = tuple[str, str, dict[str, Any]]  # (severity, text key, fields)


def _drift_reasons(latest: dict[str, Any], rules: VerdictRules) -> list[Reason]:
    """Retrain reasons from the latest period's score and feature PSI."""
    out: list[Reason] = []
    drift = latest["psi"]
    if drift["score_verdict"] == "significant":
        out.append(
            (
                "retrain",
                "monitor.reason.score_psi",
                {"period": latest["as_of"], "psi": drift["score"]},
            )
        )
    k, n = len(drift["significant_features"]), len(drift["features"])
    if n and k / n >= rules.feature_share:
        out.append(
            ("retrain", "monitor.reason.features", {"period": latest["as_of"], "k": k, "n": n})
        )
    return out


def _outcome_reasons(
    p: dict[str, Any], model_auc: float | None, rules: VerdictRules
) -> list[Reason]:
    """Retrain / recalibrate reasons from one period with complete outcomes."""
    out: list[Reason] = []
    when = p["as_of"]
    if model_auc is not None and p["auc"] is not None and p["auc"] < model_auc - rules.auc_drop:
        out.append(
            ("retrain", "monitor.reason.auc", {"period": when, "auc": p["auc"], "ref": model_auc})
        )
    port = p["portfolio"]
    if port["light"] == "red":
        fields = {"period": when, "d": port["defaults"], "e": port["expected_defaults"]}
        out.append(("recalibrate", "monitor.reason.portfolio", fields))
    tested = sum(p["lights"].values())
    if tested and p["lights"]["red"] / tested >= rules.red_share:
        fields = {
            "period": when,
            "red": p["lights"]["red"],
            "tested": tested,
            "dr": p["default_rate"],
            "pd": p["mean_pd"],
        }
        out.append(("recalibrate", "monitor.reason.red", fields))
    return out


def judge(
    periods: list[dict[str, Any]], model_auc: float | None, cfg: MonitorConfig
) -> dict[str, Any]:
    """Give the plain-language verdict (``fine``, ``recalibrate``, ``retrain``) and its reasons.

    Parameters
    ----------
    periods : list of dict
        Period rows of :func:`monitor`, oldest first.
    model_auc : float or None
        The model's own out-of-time AUC at training (the AUC reference).
    cfg : MonitorConfig

    Returns
    -------
    dict
        ``code``, ``en`` and ``zh`` headline, and ``reasons`` (each ``key``, ``en``, ``zh``).
    """
    from features.texts import text

    latest = periods[-1]
    reasons = _drift_reasons(latest, cfg.verdict)
    complete = [p for p in periods if p["complete"]][-cfg.verdict.periods :]
    if not complete:
        reasons.append(("fine", "monitor.reason.no_outcomes", {}))
    for p in complete:
        reasons += _outcome_reasons(p, model_auc, cfg.verdict)
    if complete and not reasons:
        p = complete[-1]
        fields = {
            "period": p["as_of"],
            "green": p["lights"]["green"],
            "tested": sum(p["lights"].values()),
            "auc": "—" if p["auc"] is None else f"{p['auc']:.3f}",
            "psi": latest["psi"]["score"],
        }
        reasons.append(("fine", "monitor.reason.ok", fields))
    severities = {r[0] for r in reasons}
    code = next((c for c in ("retrain", "recalibrate") if c in severities), "fine")
    return {
        "code": code,
        "en": text(f"monitor.verdict.{code}", "en"),
        "zh": text(f"monitor.verdict.{code}", "zh"),
        "reasons": [
            {"key": k, "severity": s, "en": text(k, "en", **f), "zh": text(k, "zh", **f)}
            for s, k, f in reasons
        ],
    }


def monitor(
    model: Any,
    snapshots: pd.DataFrame,
    events: pd.DataFrame | None = None,
    observed_to: pd.Timestamp | None = None,
    reference: pd.DataFrame | None = None,
    config: MonitorConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score past snapshots and backtest them against outcomes: the monitoring report.

    Parameters
    ----------
    model : CreditModel
    snapshots : DataFrame
        ``usc_code``, ``as_of`` and the model's features (see :func:`read_snapshots`).
    events : DataFrame, optional
        ``usc_code, default_date`` (see :func:`read_outcomes`); without it only drift is shown.
    observed_to : Timestamp, optional
        Last date the outcomes cover.
    reference : DataFrame, optional
        PSI reference sample (default: see the module docstring).
    config : MonitorConfig, optional
        Thresholds (``training/config/monitor.yaml``).
    progress : bool
        Progress bars over the periods.

    Returns
    -------
    dict
        JSON-ready: ``model``, ``config``, ``reference``, ``periods`` (oldest first), ``summary``
        and ``verdict``.
    """
    from tqdm.auto import tqdm

    cfg = config or load_monitor_config()
    if not len(snapshots):
        raise ValueError("snapshots must have rows; got none")
    scored = score_periods(model, snapshots, events, observed_to, cfg.horizon_months, progress)
    ref, ref_text = _reference(model, scored, reference)
    drift = drift_table(model, scored, ref, cfg.psi_bins, progress)
    windows = model.metadata.get("windows") or {}
    end = (windows.get("validation") or windows.get("train") or [None, None])[1]
    fitted_end = pd.Timestamp(end) if end else None
    periods = [
        _period(model, rows, drift, cfg, fitted_end)
        for _, rows in tqdm(
            scored.groupby("as_of", sort=True), desc="backtesting periods", disable=not progress
        )
    ]
    model_auc = (model.metadata.get("test_metrics") or {}).get("auc")
    tested = [g for p in periods if p["complete"] for g in p["grades"] if g["light"]]
    return {
        "model": {"version": model.version, "out_of_time_auc": model_auc, "windows": windows},
        "config": cfg.model_dump(),
        "psi_bands": load_drift_bands().model_dump(),
        "reference": {"description": ref_text, "n": len(ref)},
        "observed_to": None if observed_to is None else str(pd.Timestamp(observed_to).date()),
        "periods": periods,
        "summary": {
            "periods": len(periods),
            "complete_periods": sum(p["complete"] for p in periods),
            "grade_tests": len(tested),
            **{f"{k}_grades": sum(g["light"] == k for g in tested) for k in LIGHTS},
        },
        "verdict": judge(periods, model_auc, cfg),
    }


# ---------------------------------------------------------------------------- HTML and MLflow
_LIGHT_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828", None: "#eeeeee"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Figures as base64 PNGs: rate vs PD, traffic lights, AUC and PSI over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    periods = report["periods"]
    done = [p for p in periods if p["complete"]]
    out: dict[str, str] = {}
    if done:
        x = [p["as_of"] for p in done]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(x, [p["default_rate"] for p in done], "o-", label="observed default rate")
        ax.plot(x, [p["mean_pd"] for p in done], "s--", label="mean PD")
        for i, p in enumerate(done):
            ax.scatter(
                [i],
                [p["default_rate"]],
                s=90,
                color=_LIGHT_COLOURS[p["portfolio"]["light"]],
                zorder=3,
            )
        ax.set_title("Observed 12-month default rate vs mean PD (dot colour: portfolio light)")
        ax.tick_params(axis="x", rotation=60)
        ax.legend()
        out["default_rate_vs_pd"] = _png(fig)

        grades = [g["grade"] for g in done[0]["grades"]]
        code = {None: 0, "green": 1, "yellow": 2, "red": 3}
        grid = np.array([[code[g["light"]] for g in p["grades"]] for p in done]).T
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(done) + 2), 0.35 * len(grades) + 1.5))
        ax.imshow(
            grid,
            cmap=ListedColormap([_LIGHT_COLOURS[k] for k in (None, "green", "yellow", "red")]),
            vmin=0,
            vmax=3,
            aspect="auto",
        )
        ax.set_yticks(range(len(grades)), grades)
        ax.set_xticks(range(len(done)), x, rotation=60)
        ax.set_title("Traffic light per grade and period (grey: no firms)")
        out["traffic_lights"] = _png(fig)

        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(x, [np.nan if p["auc"] is None else p["auc"] for p in done], "o-", label="AUC")
        if report["model"]["out_of_time_auc"]:
            ax.axhline(
                report["model"]["out_of_time_auc"],
                color="k",
                ls="--",
                lw=1,
                label="model's out-of-time AUC",
            )
        ax.set_title("Discrimination over time")
        ax.tick_params(axis="x", rotation=60)
        ax.legend()
        out["auc_over_time"] = _png(fig)

    x = [p["as_of"] for p in periods]
    names = sorted(
        periods[0]["psi"]["features"], key=lambda n: -max(p["psi"]["features"][n] for p in periods)
    )[:20]
    fig, (a1, a2) = plt.subplots(
        2,
        1,
        figsize=(max(7, 0.45 * len(x) + 3), 3 + 0.3 * len(names)),
        gridspec_kw={"height_ratios": [1, 2]},
    )
    a1.plot(x, [p["psi"]["score"] for p in periods], "o-", label="score PSI")
    for level, ls in (
        (report["psi_bands"]["moderate"], ":"),
        (report["psi_bands"]["significant"], "--"),
    ):
        a1.axhline(level, color="k", ls=ls, lw=1)
    a1.set_title("PSI of the score per period (lines: moderate / significant)")
    a1.tick_params(axis="x", labelbottom=False)
    img = a2.imshow(
        np.array([[p["psi"]["features"][n] for p in periods] for n in names]),
        aspect="auto",
        cmap="Reds",
        vmin=0,
        vmax=max(0.3, report["psi_bands"]["significant"] * 1.2),
    )
    a2.set_yticks(range(len(names)), names, fontsize=7)
    a2.set_xticks(range(len(x)), x, rotation=60)
    a2.set_title("PSI of the most drifted features")
    fig.colorbar(img, ax=a2)
    fig.tight_layout()
    out["psi_over_time"] = _png(fig)
    return out


def render_html(report: dict[str, Any]) -> str:
    """One self-contained HTML page: verdict, plots, per-period and per-grade tables."""
    from jinja2 import Template

    return Template(_TEMPLATE).render(
        r=report,
        figures=plots(report),
        esc=html.escape,
        colours=_LIGHT_COLOURS,
        fmt=lambda v, d=4: "—" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v)),
    )


_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>Kuaxin model monitoring</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}.light{color:#fff;font-weight:bold}
.verdict{font-size:1.2em;padding:8px;border:2px solid #333}</style></head><body>
<h1>Kuaxin credit model — monitoring and backtest</h1>
<p>Model {{ r.model.version }}{% if r.model_registry and r.model_registry.registered_version %} (registered {{ r.model_registry.name }} version {{ r.model_registry.registered_version }}){% endif %} · out-of-time AUC at training {{ fmt(r.model.out_of_time_auc) }} · outcomes observed to {{ r.observed_to or "—" }} · PSI reference: {{ esc(r.reference.description) }} ({{ r.reference.n }} rows)</p>
<p class="verdict">{{ esc(r.verdict.en) }}<br>{{ esc(r.verdict.zh) }}</p>
<ul>{% for x in r.verdict.reasons %}<li>{{ esc(x.en) }} / {{ esc(x.zh) }}</li>{% endfor %}</ul>
<p>Per grade and period: one-sided binomial and Jeffreys tests of "the grade's default rate is at most its mean PD" ({{ r.config.traffic_lights.light_test }} sets the light: red below p = {{ fmt(1 - r.config.traffic_lights.red_confidence, 3) }}, yellow below {{ fmt(1 - r.config.traffic_lights.yellow_confidence, 3) }}). {{ r.summary.grade_tests }} grade tests: {{ r.summary.green_grades }} green, {{ r.summary.yellow_grades }} yellow, {{ r.summary.red_grades }} red.</p>
{% for name, img in figures.items() %}<h3>{{ name }}</h3><img src="data:image/png;base64,{{ img }}">{% endfor %}
<h2>Periods</h2><table><tr><th>as of</th><th>firms</th><th>in model window</th><th>defaults</th><th>default rate</th><th>mean PD</th><th>AUC</th><th>portfolio</th><th>score PSI</th><th>features significant</th></tr>
{% for p in r.periods %}<tr><td>{{ p.as_of }}</td><td>{{ p.n }}</td><td>{{ "yes" if p.in_model_window else "no" }}</td>{% if p.complete %}<td>{{ p.defaults }}</td><td>{{ fmt(p.default_rate) }}</td><td>{{ fmt(p.mean_pd) }}</td><td>{{ fmt(p.auc) }}</td><td class="light" style="background:{{ colours[p.portfolio.light] }}">{{ p.portfolio.light }}</td>{% else %}<td colspan="5">outcomes not complete (mean PD {{ fmt(p.mean_pd) }})</td>{% endif %}<td>{{ fmt(p.psi.score) }} ({{ p.psi.score_verdict }})</td><td>{{ p.psi.significant_features | length }}</td></tr>{% endfor %}</table>
<h2>Grades per period</h2>
{% for p in r.periods if p.complete %}<h3>{{ p.as_of }}</h3><table><tr><th>grade</th><th>class</th><th>firms</th><th>defaults</th><th>expected</th><th>mean PD</th><th>default rate</th><th>binomial p</th><th>Jeffreys p</th><th>light</th></tr>
{% for g in p.grades if g.n %}<tr><td>{{ g.grade }}</td><td>{{ g.supervision_class }}</td><td>{{ g.n }}</td><td>{{ g.defaults }}</td><td>{{ fmt(g.expected_defaults, 1) }}</td><td>{{ fmt(g.mean_pd) }}</td><td>{{ fmt(g.default_rate) }}</td><td>{{ fmt(g.binomial_p) }}</td><td>{{ fmt(g.jeffreys_p) }}</td><td class="light" style="background:{{ colours[g.light] }}">{{ g.light }}</td></tr>{% endfor %}</table>{% endfor %}
</body></html>"""


def write_report(report: dict[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``monitor.json`` and ``report.html`` into ``out_dir``."""
    import json

    from training.report import _default

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "monitor.json", out / "report.html"
    json_path.write_text(
        json.dumps(report, indent=2, default=_default, ensure_ascii=False), encoding="utf-8"
    )
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def log_monitor(report: dict[str, Any], html_path: Path, tracking_uri: str | None = None) -> str:
    """Log the monitoring run to MLflow against the model version; return the run id.

    The run (experiment ``experiment`` of the configuration) carries the model's version and,
    when known, its registered name and version as tags, the per-period AUC, default rate,
    mean PD, score PSI and light counts as metrics (step = period index), and the JSON and HTML
    as artifacts. A registered version also gets ``monitor_verdict`` and ``monitor_run_id`` tags.
    """
    import mlflow

    from training.registry import _client, _ensure_experiment

    client = _client(tracking_uri)
    _ensure_experiment(client, report["config"]["experiment"], tracking_uri)
    reg = report.get("model_registry") or {}
    with mlflow.start_run(run_name=f"monitor {report['model']['version']}") as run:
        mlflow.set_tags(
            {
                "model_version": report["model"]["version"],
                "registered_model": reg.get("name") or "",
                "registered_version": reg.get("registered_version") or "",
                "verdict": report["verdict"]["code"],
            }
        )
        mlflow.log_params({"periods": len(report["periods"]), "observed_to": report["observed_to"]})
        for step, p in enumerate(report["periods"]):
            values = {"score_psi": p["psi"]["score"], "mean_pd": p["mean_pd"]}
            if p["complete"]:
                values |= {
                    "default_rate": p["default_rate"],
                    **{f"{k}_grades": v for k, v in p["lights"].items()},
                }
                if p["auc"] is not None:
                    values["auc"] = p["auc"]
            mlflow.log_metrics(values, step=step)
        mlflow.log_metrics({f"summary.{k}": float(v) for k, v in report["summary"].items()})
        mlflow.log_dict(report, "monitor.json")
        mlflow.log_artifact(str(html_path))
        if reg.get("name") and reg.get("registered_version"):
            client.set_model_version_tag(
                reg["name"], reg["registered_version"], "monitor_verdict", report["verdict"]["code"]
            )
            client.set_model_version_tag(
                reg["name"], reg["registered_version"], "monitor_run_id", run.info.run_id
            )
        return str(run.info.run_id)
