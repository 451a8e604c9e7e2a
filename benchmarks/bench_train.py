"""Training benchmark: time and quality of `kuaxin train` on the default simulated data and on
the Polish bankruptcy table; appends a dated section to benchmarks/results_train.md.

Usage:
    python -m benchmarks.bench_train [--dataset data/features/train.parquet] [--oracle data/oracle]
        [--trials N] [--polish-trials N] [--skip-polish]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from training.cli import run_training

POLISH = Path(__file__).resolve().parents[1] / "tests" / "data" / "polish_bankruptcy_year1.csv.gz"
RESULTS = Path(__file__).with_name("results_train.md")


def machine() -> str:
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    return (
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n"
        f"- machine: {platform.platform()}, nproc {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
        f"```\n{free}\n```\n"
    )


def distilled_ceiling(dataset: Path, oracle: Path) -> dict[str, float]:
    """How much of the oracle gap is information the features do not carry.

    Evaluation only (the model never sees the oracle): a LightGBM regression of the TRUE
    log-odds on the features, fitted on the train + validation windows, scored on the test
    window. Its AUC is what a model could reach from these features with noise-free targets;
    oracle AUC minus it is information missing from the features, it minus the model's AUC is
    estimation error from learning on 0/1 outcomes.
    """
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from features.catalog import load_catalog
    from training.model import features_from_catalog
    from training.report import read_oracle
    from training.scale import load_config
    from training.train import _stub, time_split

    cfg = load_config()
    df = pd.read_parquet(dataset)
    df["as_of"] = pd.to_datetime(df["as_of"])
    catalog = load_catalog()
    names = [n for n in catalog.names if n in df.columns]
    tr, va, te = time_split(
        df["as_of"], cfg["split"]["test_share"], cfg["split"]["validation_share"]
    )
    feats = features_from_catalog(catalog, names, df[tr])
    x = _stub(feats, cfg, None).matrix(df)
    joined = df[["usc_code", "as_of"]].merge(
        read_oracle(oracle), on=["usc_code", "as_of"], how="left"
    )
    p = joined["pd_12m"].clip(1e-6, 1 - 1e-6).to_numpy()
    target = np.log(p / (1 - p))
    fit = tr | va
    booster = lgb.train(
        {
            "objective": "regression",
            "verbosity": -1,
            "num_threads": 1,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 50,
        },
        lgb.Dataset(
            x[fit],
            target[fit],
            feature_name=[f.name for f in feats],
            categorical_feature=[i for i, f in enumerate(feats) if f.kind == "category"],
        ),
        600,
    )
    pred = booster.predict(x[te])
    y = df["label"].to_numpy()
    return {
        "distilled_auc": float(roc_auc_score(y[te], pred)),
        "distilled_corr_true_log_odds": float(np.corrcoef(pred, target[te])[0, 1]),
    }


def per_year_lines(rep: dict) -> list[str]:
    """Per as-of year of the out-of-time window: model vs logistic challenger vs oracle, and
    the point-in-time vs through-the-cycle calibration levels."""
    cycle = rep.get("cycle")
    if not cycle:
        return []

    def f(v: float | None, d: int = 4) -> str:
        return "—" if v is None else f"{v:.{d}f}"

    oracle = {r["year"]: r for r in cycle.get("oracle_out_of_time", [])}
    out = [
        "Per as-of year (out-of-time window; in-sample years of the final booster in the report):",
        "",
        "| as-of year | rows | defaults | default rate | model mean PD | model AUC | model ECE "
        "| challenger AUC | challenger ECE | oracle mean PD | oracle AUC | oracle ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in cycle["out_of_time"]:
        o = oracle.get(r["year"], {})
        out.append(
            f"| {r['year']} | {r['n']} | {r['defaults']} | {f(r['default_rate'])} | "
            f"{f(r['mean_pd'])} | {f(r['auc'])} | {f(r['ece'])} | {f(r.get('challenger_auc'))} | "
            f"{f(r.get('challenger_ece'))} | {f(o.get('mean_pd'))} | {f(o.get('auc'))} | "
            f"{f(o.get('ece'))} |"
        )
    cal, modes = cycle.get("calibration"), cycle.get("modes")
    if cal and modes:
        out += [
            "",
            f"- calibration mode `{cal['mode']}`; long-run default rate "
            f"{cal['long_run_default_rate']:.4f} (validation window {cal['validation_default_rate']:.4f}), "
            f"TTC intercept shift {cal['ttc_shift']:+.3f} log-odds. On the test window: "
            + "; ".join(
                f"{name} mean PD {m['mean_pd']:.4f}, ECE {m['ece']:.4f} (per year "
                + ", ".join(f"{y['year']}: {f(y['ece'])}" for y in m["years"])
                + ")"
                for name, m in modes.items()
            ),
        ]
    return [*out, ""]


def default_lines(rep: dict, wall: float, args: argparse.Namespace) -> list[str]:
    """The default-data section: headline table, oracle, per-year table, distilled ceiling."""
    lines: list[str] = []
    t, c = rep["lightgbm"]["test"], rep["challenger"]["test"]
    o = rep.get("oracle", {})
    lines += [
        f"### Default simulated data: `{args.dataset}`",
        "",
        f"- rows {sum(rep['protocol']['rows'].values())}, windows {rep['protocol']['windows']}, "
        f"search trials {rep['protocol']['trials']}",
        f"- training (search + fit + calibration + challenger): {rep['train_seconds']:.1f} s; "
        f"with report and MLflow registration: {wall:.1f} s",
        "",
        "| metric (out-of-time test) | LightGBM | logistic challenger |",
        "| --- | --- | --- |",
        *[
            f"| {k} | {t[k]:.4f} | {c[k]:.4f} |"
            for k in ("auc", "gini", "ks", "brier", "log_loss", "ece")
        ],
        "",
        f"- oracle AUC {o.get('oracle_auc', float('nan')):.4f}, model AUC on matched rows "
        f"{o.get('model_auc_on_matched', float('nan')):.4f}, gap {o.get('auc_gap', float('nan')):.4f}; "
        f"corr(pred, true PD) pearson {o.get('pearson_pd', float('nan')):.3f}, "
        f"log-odds {o.get('pearson_log_odds', float('nan')):.3f}, spearman {o.get('spearman_pd', float('nan')):.3f}",
        "",
    ]
    if args.from_metrics:
        lines += [
            f"- figures from `{args.from_metrics}`, written by `kuaxin train --metrics-out` (the "
            "same run_training); the load average above is at formatting time",
            "",
        ]
    lines += per_year_lines(rep)
    if Path(args.oracle).is_dir():
        d = distilled_ceiling(Path(args.dataset), Path(args.oracle))
        lines += [
            f"- distilled ceiling (LightGBM regression of the true log-odds on the features, "
            f"train+validation → test; evaluation only): AUC {d['distilled_auc']:.4f}, "
            f"corr with true log-odds {d['distilled_corr_true_log_odds']:.3f}. Gap split: "
            f"information not in the features {o.get('oracle_auc', 0) - d['distilled_auc']:.4f}, "
            f"estimation from 0/1 outcomes {d['distilled_auc'] - t['auc']:.4f}.",
            "",
        ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="data/features/train.parquet")
    ap.add_argument("--oracle", default="data/oracle")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--polish-trials", type=int, default=None)
    ap.add_argument("--skip-polish", action="store_true")
    ap.add_argument(
        "--from-metrics",
        default=None,
        help="format the metrics JSON of a `kuaxin train --metrics-out` run instead of training",
    )
    args = ap.parse_args()
    lines = ["", f"## Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}", "", machine()]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        if Path(args.dataset).is_file():
            if args.from_metrics:
                # a run already made by `kuaxin train --metrics-out` (the same run_training)
                rep = json.loads(Path(args.from_metrics).read_text(encoding="utf-8"))
                wall = float(rep.get("total_seconds", rep["train_seconds"]))
            else:
                t0 = time.perf_counter()
                rep = run_training(
                    Path(args.dataset),
                    None,
                    None,
                    None,
                    None,
                    Path(args.oracle) if Path(args.oracle).is_dir() else None,
                    None,
                    args.trials,
                    True,
                    uri,
                    "bench",
                    progress=False,
                )
                wall = time.perf_counter() - t0
            lines += default_lines(rep, wall, args)
        if not args.skip_polish and POLISH.is_file():
            rep = run_training(
                None,
                POLISH,
                "class",
                None,
                None,
                None,
                None,
                args.polish_trials,
                False,
                uri,
                "bench-polish",
                progress=False,
            )
            p = rep["protocol"]
            lines += [
                "### Polish bankruptcy, year 1 (7,027 firms, 64 ratios)",
                "",
                f"- protocol: {p['kind']}, {p['folds']} outer folds, inner folds {p['inner_folds']}, "
                f"{p['trials']} trials per search; {rep['train_seconds']:.1f} s",
                "",
                "| model | mean CV AUC | sd | pooled OOF AUC |",
                "| --- | --- | --- | --- |",
                *[
                    f"| {k} | {rep[k]['mean_auc']:.4f} | {rep[k]['std_auc']:.4f} | {rep[k]['pooled_oof_auc']:.4f} |"
                    for k in ("defaults", "tuned", "challenger")
                ],
                "",
                f"- calibrated OOF ECE {rep['calibrated_oof']['ece']:.4f}",
                "",
            ]
    text = "\n".join(lines)
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Training benchmark results\n\nWritten by `python -m benchmarks.bench_train`.\n"
        )
    with RESULTS.open("a") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
