"""Benchmark ``kuaxin ingest``: wall time and peak memory of ingesting a simulated world.

Usage::

    .venv/bin/python benchmarks/bench_ingest.py --firms 20000 --fault-rate 0.01

Simulates the world into a temporary folder (not timed), ingests it (timed, with the peak
resident memory of the process), and prints one Markdown table row for
``benchmarks/results_ingest.md``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the benchmark and print a Markdown row."""
    from features.ingest import ingest
    from simulator.simulate import simulate

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--firms", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--start", default="2019-01")
    parser.add_argument("--end", default="2024-12")
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument("--keep", type=Path, default=None, help="keep the raw world here")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ingest_bench_"))
    try:
        raw = args.keep or root / "raw"
        if not (raw / "firms").exists():
            t0 = time.perf_counter()
            simulate(
                n_firms=args.firms,
                seed=args.seed,
                start=args.start,
                end=args.end,
                out_dir=raw,
                oracle_dir=root / "oracle",
                fault_rate=args.fault_rate,
                progress=False,
            )
            sim_s = time.perf_counter() - t0
        else:
            sim_s = float("nan")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = ingest(raw, root / "clean", progress=False)
        seconds = time.perf_counter() - t0
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        totals = report["totals"]
        sys.stdout.write(
            f"| {args.firms:,} | {args.start}..{args.end} | {args.fault_rate} | {totals['read']:,} "
            f"| {totals['quarantined']:,} | {seconds:.1f} | {totals['read'] / seconds:,.0f} "
            f"| {rss_after / 1024:,.0f} (before ingest {rss_before / 1024:,.0f}) | {sim_s:.1f} |\n"
        )
        slowest = sorted(
            ((t, e["seconds"]) for t, e in report.items() if "seconds" in e), key=lambda x: -x[1]
        )[:5]
        sys.stdout.write("slowest tables: " + ", ".join(f"{t} {s:.1f}s" for t, s in slowest) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
