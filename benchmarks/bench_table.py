"""Table-mode benchmark: `kuaxin train --table` (nested CV) on the shipped real tables.

Prints a markdown block for the "Tables (kuaxin train --table)" section of
benchmarks/results_train.md: date, machine, load average before and after, wall time, and per
table the defaults / tuned / challenger mean and pooled AUCs, the per-fold differences and the
calibrated out-of-fold ECE and Brier. Usage::

    python -m benchmarks.bench_table [--budget-seconds S] [--trials N] [--only polish|german]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from training.cli import run_training

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
TABLES = {
    "polish": (DATA / "polish_bankruptcy_year1.csv.gz", "class", None),
    "german": (DATA / "german_credit.csv.gz", "creditability", "bad"),
}


def run(name: str, seconds: float | None, trials: int | None) -> str:
    """Train one table without registering and describe the result as markdown."""
    path, target, positive = TABLES[name]
    load0, t0 = os.getloadavg(), time.perf_counter()
    rep = run_training(
        None,
        path,
        target,
        None,
        None,
        None,
        None,
        trials,
        False,
        None,
        None,
        progress=False,
        table_opts={"positive": positive, "seconds": seconds},
    )
    wall, load1 = time.perf_counter() - t0, os.getloadavg()
    p, cal = rep["protocol"], rep["calibrated_oof"]
    rows = [
        f"| {k} | {rep[k]['mean_auc']:.4f} | {rep[k]['std_auc']:.4f} | {rep[k]['pooled_oof_auc']:.4f} |"
        for k in ("defaults", "tuned", "challenger")
    ]
    diffs = ", ".join(f"{d:+.4f}" for d in rep["tuned_minus_defaults_by_fold"])
    chosen = ", ".join(f"{f['chosen']} (w {f['blend_weight']})" for f in rep["fold_params"])
    return "\n".join(
        [
            f"### {name}: `{path.name}` ({rep['rows']} rows, {rep['defaults_in_data']} defaults)",
            "",
            f"- {p['kind']}, {p['folds']}×{p['inner_folds']} folds, budget {p['budget_seconds']} s,"
            f" ≤{p['trials']} trials/search; wall {wall:.0f} s; load average "
            f"{load0[0]:.1f} → {load1[0]:.1f} (2 cores)",
            "",
            "| model | mean AUC (headline for tuned) | sd | pooled OOF AUC |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
            f"- tuned − defaults per outer fold: {diffs}",
            f"- chosen per outer fold: {chosen}; final: {rep['final']['chosen']}",
            f"- calibrated OOF (parameters and Platt map chosen without the scored rows): "
            f"ECE {cal['ece']:.4f}, Brier {cal['brier']:.4f}, AUC {cal['auc']:.4f}",
            "",
        ]
    )


def main() -> None:
    """Run the tables and print the markdown."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-seconds", type=float, default=None)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--only", choices=sorted(TABLES), default=None)
    args = ap.parse_args()
    head = (
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.platform()}, nproc {os.cpu_count()}\n"
    )
    parts = [head]
    for name in [args.only] if args.only else list(TABLES):
        parts.append(run(name, args.budget_seconds, args.trials))
    print("\n".join(parts))


if __name__ == "__main__":
    main()
