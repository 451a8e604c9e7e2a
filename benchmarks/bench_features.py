"""Benchmark feature building: snapshot (and training-set) time and peak memory by world size.

For each size a simulated, ingested world is needed (``kuaxin simulate`` + ``kuaxin ingest``,
7 years 2019-01..2025-12); existing worlds under ``--worlds`` are reused, missing ones are built
there first (outside the timings). Each measurement runs in its own Python subprocess so its
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that build's alone; the child times
the stages of ``kuaxin features``: read the clean tables, prepare (code firms and months,
firm-month aggregates), compute every feature at the as-of date, write the Parquet file.
Results go to ``benchmarks/results_features.md``; data stays under ``--worlds`` (default /tmp).

Usage::

    .venv/bin/python benchmarks/bench_features.py --sizes 2000 20000
    .venv/bin/python benchmarks/bench_features.py --sizes 2000 20000 60000 --dataset
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUAXIN = Path(sys.executable).with_name("kuaxin")
AS_OF = "2025-07-01"
DATASET = ("2020-01-01", "2024-10-01")

CHILD = r"""
import json, resource, sys, tempfile, time
from datetime import date
from pathlib import Path
t0 = time.perf_counter()
from features.snapshot import CleanTables, default_catalog, default_config, snapshot_from_prepared
from features.feature_builders import prepare
from features.dataset import build_dataset
clean, as_of, mode = sys.argv[1], date.fromisoformat(sys.argv[2]), sys.argv[3]
t_import = time.perf_counter()
tables = CleanTables(clean)  # what `kuaxin features` / `kuaxin dataset` use: one table at a time
out = {"import_s": t_import - t0}
if mode == "snapshot":
    prep = prepare(tables, default_config())
    t_prep = time.perf_counter()
    snap = snapshot_from_prepared(prep, as_of, default_catalog())
    t_feat = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        snap.to_parquet(Path(tmp) / "snapshot.parquet", index=False)
    t_write = time.perf_counter()
    out.update(read_prepare_s=t_prep - t_import, features_s=t_feat - t_prep,
               write_s=t_write - t_feat, firms=len(snap), columns=snap.shape[1])
else:
    start, end = date.fromisoformat(sys.argv[4]), date.fromisoformat(sys.argv[5])
    data = build_dataset(tables, start, end, "quarter")
    out.update(dataset_s=time.perf_counter() - t_import, dataset_rows=len(data),
               as_of_dates=int(data["as_of"].nunique()))
out["total_s"] = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
out["peak_rss_mb"] = usage.ru_maxrss / 1024
out["cpu_s"] = usage.ru_utime + usage.ru_stime
print(json.dumps(out))
"""


def ensure_world(n: int, worlds: Path) -> Path:
    """Return the clean folder of an ``n``-firm world, simulating and ingesting it if needed."""
    base = worlds / f"w{n}"
    clean = base / "clean"
    if (clean / "ingest_report.json").exists():
        return clean
    subprocess.run(
        [str(KUAXIN), "simulate", "--firms", str(n), "--seed", "7", "--start", "2019-01",
         "--end", "2025-12", "--fault-rate", "0.002", "--out", str(base / "raw"),
         "--oracle-out", str(base / "oracle")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        [str(KUAXIN), "ingest", str(base / "raw"), "--out", str(clean)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return clean


def measure(clean: Path, mode: str) -> dict[str, float]:
    """Run one build in a fresh interpreter and return its timings and peak RSS."""
    cmd = [sys.executable, "-c", CHILD, str(clean), AS_OF, mode, *DATASET]
    started = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    report = json.loads((clean / "ingest_report.json").read_text(encoding="utf-8"))
    result["rows"] = report["totals"]["accepted"]
    return result


def _machine() -> str:
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.rstrip()
    return (
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.platform()}, Python {platform.python_version()}, "
        f"`nproc` = {os.cpu_count()}\n"
        f"- load average (1/5/15 min) when the table was written: "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} — the machine is shared, so "
        "absolute times vary between runs; the growth with size is the stable result\n"
        f"- `free -g`:\n\n```\n{free}\n```\n"
    )


def read_log(path: Path) -> list[tuple[int, dict, dict | None]]:
    """Measurements printed by an earlier run (``N firms snapshot|dataset: {json}`` lines)."""
    found: dict[int, dict[str, dict]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*(\d+) firms (snapshot|dataset):\s+(\{.*\})\s*$", line)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = json.loads(match[3])
    return [
        (n, m["snapshot"], m.get("dataset")) for n, m in sorted(found.items()) if "snapshot" in m
    ]


def main() -> None:
    """Measure every size and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--worlds", type=Path, default=Path("/tmp/kx_feat"))
    parser.add_argument("--dataset", action="store_true", help="also time the training set")
    parser.add_argument(
        "--dataset-max",
        type=int,
        default=60_000,
        help="time the training set only up to this many firms (200k needs ~12 GB)",
    )
    parser.add_argument(
        "--from-log",
        type=Path,
        help="re-render the table from this script's printed measurements instead of measuring",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_features.md")
    args = parser.parse_args()
    rows = read_log(args.from_log) if args.from_log else []
    for n in [] if args.from_log else args.sizes:
        clean = ensure_world(n, args.worlds)
        snap = measure(clean, "snapshot")
        snap["load"] = os.getloadavg()[0]
        print(f"{n:>7} firms snapshot: {json.dumps(snap)}", flush=True)
        data = measure(clean, "dataset") if args.dataset and n <= args.dataset_max else None
        if data:
            print(f"{n:>7} firms dataset:  {json.dumps(data)}", flush=True)
        rows.append((n, snap, data))
    args.sizes = [n for n, _, _ in rows]
    args.dataset = any(d for _, _, d in rows)
    lines = [
        "# Feature building benchmark",
        "",
        _machine(),
        f"Snapshot at {AS_OF} of a simulated world of N firms over 2019-01..2025-12 (seed 7, "
        "fault rate 0.002, after ingestion). Each row is one fresh Python process; peak RSS is "
        "that process's maximum resident set. Times in seconds (wall clock; CPU = user + system "
        "time of the process, less sensitive to other load on the machine).",
        "",
        "| firms | clean rows | read + prepare | features | write | snapshot total | CPU | peak RSS (MB) | live firms | load avg |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, s, _ in rows:
        lines.append(
            f"| {n:,} | {s['rows']:,} | {s['read_prepare_s']:.1f} | "
            f"{s['features_s']:.2f} | {s['write_s']:.2f} | {s['total_s']:.1f} | {s['cpu_s']:.1f} | "
            f"{s['peak_rss_mb']:,.0f} | {s['firms']:,} | {s['load']:.1f} |"
        )
    if any(d for _, _, d in rows):
        lines += [
            "",
            f"Training set, quarterly as-of dates {DATASET[0]}..{DATASET[1]} (one preparation, "
            "then one feature pass per date):",
            "",
            f"Timed up to {args.dataset_max:,} firms: the training set's peak memory is about "
            "1.15 × the snapshot's, too much at 200,000 firms (~12 GB) for this shared machine.",
            "",
            "| firms | as-of dates | rows | read + build | CPU | peak RSS (MB) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n, _, d in rows:
            if d:
                lines.append(
                    f"| {n:,} | {d['as_of_dates']} | {d['dataset_rows']:,} | "
                    f"{d['dataset_s']:.1f} | {d['cpu_s']:.1f} | {d['peak_rss_mb']:,.0f} |"
                )
    lines += ["", "## How cost grows", ""]
    for (n0, a, _), (n1, b, _) in itertools.pairwise(rows):
        lines.append(
            f"- {n0:,} → {n1:,} firms (×{n1 / n0:.3g}; clean rows ×{b['rows'] / a['rows']:.1f}): "
            f"snapshot wall time ×{b['total_s'] / a['total_s']:.1f}, CPU "
            f"×{b['cpu_s'] / a['cpu_s']:.1f}, peak RSS ×{b['peak_rss_mb'] / a['peak_rss_mb']:.1f}"
        )
    if len(rows) >= 2:
        (_, a, _), (_, b, _) = rows[-2], rows[-1]
        per_row_mb = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["rows"] - a["rows"]) * 1e6
        per_row_cpu = (b["cpu_s"] - a["cpu_s"]) / (b["rows"] - a["rows"]) * 1e6
        lines += [
            "",
            f"Cost is linear in the number of clean rows (about {b['rows'] / rows[-1][0]:.0f} "
            f"rows per firm over 7 years): the marginal cost is about {per_row_cpu:.1f} CPU "
            f"seconds and {per_row_mb:.0f} MB of peak memory per million rows, on top of "
            "a fixed ~1.5 s of imports. Reading and preparing the tables (Parquet decode, firm "
            "lookup, month coding, firm-month aggregates) is most of it; computing all 112 "
            "features at one date is a few per cent, which is why a quarterly training set "
            "(20 dates, one preparation) costs only about twice one snapshot.",
        ]
    if len(rows) >= 2 and max(n for n, _, _ in rows) < 200_000:
        (n0, a, _), (n1, b, _) = rows[-2], rows[-1]
        rows_200k = b["rows"] / n1 * 200_000
        slope_mb = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["rows"] - a["rows"])
        slope_cpu = (b["cpu_s"] - a["cpu_s"]) / (b["rows"] - a["rows"])
        lines += [
            "",
            "200,000 firms were not measured: building that world (simulate + ingest, about "
            "100 million clean rows) takes about half an hour on this shared 2-core machine. "
            f"Extrapolating the last two sizes linearly in clean rows: about "
            f"{b['cpu_s'] + slope_cpu * (rows_200k - b['rows']):.0f} CPU seconds and "
            f"{(b['peak_rss_mb'] + slope_mb * (rows_200k - b['rows'])) / 1024:.0f} GB peak memory "
            "for one snapshot. Beyond that size shard by firm (the Dask path in DESIGN.md) or push "
            "a date window into the Parquet read.",
        ]
    lines += [
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_features.py --sizes "
        + " ".join(str(n) for n in args.sizes)
        + (" --dataset" if args.dataset else "")
        + (f" --dataset-max {args.dataset_max}" if args.dataset else "")
        + "` (worlds are built under `--worlds`, default /tmp/kx_feat, when missing).",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
