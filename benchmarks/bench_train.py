"""Training benchmark: time and quality of `kuaxin train` on the default simulated data and on
the Polish bankruptcy table; appends a dated section to benchmarks/results_train.md.

Usage:
    python -m benchmarks.bench_train [--dataset data/features/train.parquet] [--oracle data/oracle]
        [--trials N] [--polish-trials N] [--skip-polish]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from training.cli import run_training

POLISH = Path("/work/shared/data/polish_bankruptcy_year1.csv")
RESULTS = Path(__file__).with_name("results_train.md")


def machine() -> str:
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    return (
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n"
        f"- machine: {platform.platform()}, nproc {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
        f"```\n{free}\n```\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="data/features/train.parquet")
    ap.add_argument("--oracle", default="data/oracle")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--polish-trials", type=int, default=None)
    ap.add_argument("--skip-polish", action="store_true")
    args = ap.parse_args()
    lines = ["", f"## Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}", "", machine()]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        if Path(args.dataset).is_file():
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
