"""Benchmark the platform simulator: wall time and peak memory at several sizes.

Each size runs ``kuaxin simulate`` in its own subprocess (so peak RSS is that run's alone,
read from ``resource.getrusage(RUSAGE_CHILDREN)`` after it exits). Output data goes to a
temporary folder, never the repository. Results are written to
``benchmarks/results_simulate.md``.

Usage::

    .venv/bin/python benchmarks/bench_simulate.py                 # 2,000 / 20,000 / 200,000
    .venv/bin/python benchmarks/bench_simulate.py --sizes 2000 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KUAXIN = Path(sys.executable).with_name("kuaxin")


def _memory_gb() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        return f"{kb / 1024**2:.1f} GB"
    except OSError:
        return "unknown"


def run_one(n: int, start: str, end: str, chunk: int, base: Path) -> dict[str, Any]:
    """Run one simulation in a subprocess; return its command, time, peak RSS and size."""
    out = base / f"sim_{n}"
    cmd = [
        str(KUAXIN),
        "simulate",
        "--out",
        str(out / "raw"),
        "--oracle-out",
        str(out / "oracle"),
        "--firms",
        str(n),
        "--seed",
        "7",
        "--start",
        start,
        "--end",
        end,
        "--chunk-size",
        str(chunk),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    size = sum(f.stat().st_size for f in out.rglob("*.parquet"))
    message = proc.stdout.strip().splitlines()[-1]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "n": n,
        "cmd": " ".join(["kuaxin", *cmd[1:]]).replace(str(base), "$TMP"),
        "wall": wall,
        # ru_maxrss of children is the maximum over all children so far; sizes run in
        # increasing order, so a later maximum is that run's own peak.
        "peak_mb": max(peak_kb, before) / 1024,
        "disk_mb": size / 1024**2,
        "message": message.replace(str(base), "$TMP"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 200_000])
    parser.add_argument("--start", default="2019-01")
    parser.add_argument("--end", default="2025-12")
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_simulate.md")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as tmp:
        for n in sorted(args.sizes):
            r = run_one(n, args.start, args.end, args.chunk_size, Path(tmp))
            print(f"{n:>8,} firms: {r['wall']:.1f} s, peak RSS {r['peak_mb']:.0f} MB", flush=True)
            results.append(r)
    lines = [
        "# Simulator benchmark",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), {_memory_gb()} RAM, "
        f"Python {platform.python_version()}; shared with other jobs while measured",
        f"- window: {args.start}..{args.end}, chunk size {args.chunk_size:,}, fault rate 0",
        "- script: `.venv/bin/python benchmarks/bench_simulate.py "
        f"--sizes {' '.join(str(s) for s in sorted(args.sizes))}`",
        "- peak RSS: `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of the subprocess",
        "",
        "| firms | wall time (s) | peak RSS (MB) | Parquet on disk (MB) | firms / s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['wall']:.1f} | {r['peak_mb']:.0f} | {r['disk_mb']:.0f} | "
            f"{float(r['n']) / float(r['wall']):,.0f} |"
        )
    lines += ["", "Commands and the simulator's summary line:", ""]
    for r in results:
        lines += [f"- `{r['cmd']}`", f"  - {r['message']}"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
