"""Benchmark the Dask scale path: snapshot building and batch score-and-explain.

Measured side by side in one run on the same machine (DESIGN.md quality bars):

1. snapshot building on one world: the pandas path in this process vs the Dask path sharded
   by firm on a local cluster of ``--workers`` processes (cold: first call, workers import
   the code; warm: second call); the results are checked equal;
2. batch scoring of that snapshot: ``training.batch.score_batch`` (PD, score, grade, class,
   top-4 reasons) in process and on the cluster vs raw ``Booster.predict(pred_contrib=True)``
   on the same rows (matrix built beforehand, one thread, as the batch path uses).

Usage::

    .venv/bin/python benchmarks/bench_batch.py --clean /tmp/kx_feat/w20000/clean \
        --as-of 2025-07-01 --workers 2 --out benchmarks/results_batch.md

Without ``--model-dir`` a model is trained once (LightGBM defaults, no search) on
``--train`` (the world's ``kuaxin dataset`` table) and cached under ``--work``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _peak_rss_mb() -> float:
    """Peak resident set of this process in MB (``VmHWM``; unlike ``ru_maxrss`` it is not
    inherited from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    """Reset this process's ``VmHWM`` (Linux ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _warm() -> float:
    """Import what a snapshot task needs; return the resident set after it (MB)."""
    import features.distributed
    import features.snapshot  # noqa: F401

    _reset_peak_rss()
    return _peak_rss_mb()


def _fresh(client) -> float:
    """Restart the workers, import the code, reset their peak RSS; return the largest RSS."""
    client.restart()
    return max(client.run(_warm).values())


def _cpu() -> float:
    """CPU seconds (user + system) of this process."""
    return time.process_time()


def _dask_timed(client, fn, *args, **kwargs):
    """Wall time, and CPU of the client plus every worker, of one Dask call."""
    before = sum(client.run(_cpu).values())
    out, wall, client_cpu = _timed(fn, *args, **kwargs)
    return out, wall, client_cpu + sum(client.run(_cpu).values()) - before


def _model(args: argparse.Namespace):
    from training.model import CreditModel

    if args.model_dir:
        return CreditModel.load(args.model_dir), f"`{args.model_dir}`"
    cached = Path(args.work) / "model"
    if not (cached / "booster.txt").is_file():
        from training.train import train_credit

        print(f"training a model on {args.train} (LightGBM defaults, no search)...", flush=True)
        result = train_credit(pd.read_parquet(args.train), trials=0, num_threads=2)
        result.model.save(cached)
    return CreditModel.load(cached), f"trained on `{args.train}` (trials=0), cached at `{cached}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", default="/tmp/kx_feat/w20000/clean")
    parser.add_argument("--train", default="/tmp/kx_feat/w20000/train.parquet")
    parser.add_argument("--as-of", default="2025-07-01")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--work", default="/tmp/kx_batch")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--out", default="benchmarks/results_batch.md")
    args = parser.parse_args()

    from features.distributed import build_snapshot_dask, local_client, shard_clean
    from features.snapshot import CleanTables, build_snapshot
    from training.batch import score_batch, score_batch_dask

    as_of = date.fromisoformat(args.as_of)
    rows: dict[str, float] = {}
    load0 = os.getloadavg()

    model, model_note = _model(args)
    print("pandas snapshot...", flush=True)
    ref, rows["snap_pandas"], rows["snap_pandas_cpu"] = _timed(
        build_snapshot, CleanTables(args.clean), as_of
    )
    rows["rss_pandas"] = _peak_rss_mb()
    print("cluster start...", flush=True)
    t0 = time.perf_counter()
    with local_client(args.workers) as client:
        rows["cluster_start"] = time.perf_counter() - t0
        print("dask snapshot (cold, warm)...", flush=True)
        got, rows["snap_dask_cold"], rows["snap_dask_cold_cpu"] = _dask_timed(
            client, build_snapshot_dask, args.clean, as_of, client
        )
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        # memory: fresh worker processes (imports done, peak reset) for each measured call
        rows["rss_worker_base"] = _fresh(client)
        got, rows["snap_dask_warm"], rows["snap_dask_warm_cpu"] = _dask_timed(
            client, build_snapshot_dask, args.clean, as_of, client
        )
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        del got
        rows["rss_worker_max"] = max(client.run(_peak_rss_mb).values())

        print("sharding once, then snapshot from the shards...", flush=True)
        sharded = Path(args.work) / "sharded"
        if sharded.exists():
            shutil.rmtree(sharded)
        _, rows["shard"], rows["shard_cpu"] = _dask_timed(
            client, shard_clean, args.clean, sharded, args.workers, client
        )
        _fresh(client)
        got, rows["snap_shard"], rows["snap_shard_cpu"] = _dask_timed(
            client, build_snapshot_dask, sharded, as_of, client
        )
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        del got
        rows["rss_worker_shard"] = max(client.run(_peak_rss_mb).values())
        shutil.rmtree(sharded)

        n = len(ref)
        print(f"batch scoring {n} rows...", flush=True)
        x, rows["matrix"], rows["matrix_cpu"] = _timed(model.matrix, ref)
        _, rows["raw_contrib"], rows["raw_contrib_cpu"] = _timed(
            model.booster.predict, x, pred_contrib=True, num_threads=1
        )
        _, rows["raw_margin"], rows["raw_margin_cpu"] = _timed(
            model.booster.predict, x, raw_score=True, num_threads=1
        )
        scores, rows["batch_pandas"], rows["batch_pandas_cpu"] = _timed(
            score_batch, model, ref, args.chunk_size
        )
        dscores, rows["batch_dask_cold"], rows["batch_dask_cold_cpu"] = _dask_timed(
            client, score_batch_dask, model, ref, client
        )
        pd.testing.assert_frame_equal(dscores, scores, check_exact=True)
        dscores, rows["batch_dask_warm"], rows["batch_dask_warm_cpu"] = _dask_timed(
            client, score_batch_dask, model, ref, client
        )
        pd.testing.assert_frame_equal(dscores, scores, check_exact=True)
    load1 = os.getloadavg()
    trees = model.booster.num_trees()
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: UP017

    def rps(seconds: float) -> str:
        return f"{n / seconds:,.0f}"

    lines = [
        "# Dask scale path and batch scoring benchmark",
        "",
        f"- date: {now}",
        f"- machine: {platform.platform()}, Python {platform.python_version()}, "
        f"`nproc` = {os.cpu_count()}; **2 cores shared with other engineers' jobs** "
        f"(load average {load0[0]:.1f} before, {load1[0]:.1f} after the run), so absolute "
        "times vary between runs; the ratios measured side by side are the result",
        "- `free -g`:",
        "",
        "```",
        free.rstrip(),
        "```",
        "",
        f"World: `{args.clean}` (clean tables), snapshot at {as_of}: {n:,} live firms, "
        f"{ref.shape[1] - 3} features. Model: {model_note}; {trees} trees.",
        "",
        "## Snapshot building: pandas vs Dask sharded by firm",
        "",
        f"Dask: `LocalCluster` of {args.workers} worker processes × 1 thread, one firm "
        "partition per worker, each partition reads only its firms' rows (Parquet filter) and "
        "runs the pandas `build_snapshot`. Results checked identical "
        "(`assert_frame_equal(check_exact=True)`).",
        "",
        "CPU = user + system seconds of this process, plus every worker's for the Dask rows "
        "(measured with `client.run`); it is much less sensitive than wall time to the other "
        "jobs on the machine.",
        "",
        "| path | wall (s) | CPU (s) | notes |",
        "| --- | ---: | ---: | --- |",
        f"| pandas, in process | {rows['snap_pandas']:.1f} | {rows['snap_pandas_cpu']:.1f} | "
        f"peak RSS {rows['rss_pandas']:,.0f} MB (process, incl. model and imports) |",
        f"| cluster start ({args.workers} workers) | {rows['cluster_start']:.1f} | | paid "
        "once per cluster |",
        f"| Dask, first call | {rows['snap_dask_cold']:.1f} | {rows['snap_dask_cold_cpu']:.1f}"
        " | workers import pandas/pyarrow/features |",
        f"| Dask, fresh workers | {rows['snap_dask_warm']:.1f} | {rows['snap_dask_warm_cpu']:.1f}"
        f" | largest worker peak RSS {rows['rss_worker_max']:,.0f} MB (after imports: "
        f"{rows['rss_worker_base']:,.0f} MB) |",
        f"| shard the clean tables once (`shard_clean`, {args.workers} shards) | "
        f"{rows['shard']:.1f} | {rows['shard_cpu']:.1f} | paid once per world |",
        f"| Dask from the sharded folder | {rows['snap_shard']:.1f} | "
        f"{rows['snap_shard_cpu']:.1f} | fresh workers; largest worker peak RSS "
        f"{rows['rss_worker_shard']:,.0f} MB |",
        "",
        f"Wall-time ratio pandas / Dask (fresh workers): "
        f"×{rows['snap_pandas'] / rows['snap_dask_warm']:.2f}; CPU ratio Dask / pandas: "
        f"×{rows['snap_dask_warm_cpu'] / rows['snap_pandas_cpu']:.2f}; from shards: wall "
        f"×{rows['snap_pandas'] / rows['snap_shard']:.2f}, CPU "
        f"×{rows['snap_shard_cpu'] / rows['snap_pandas_cpu']:.2f}.",
        "",
        "## Batch score-and-explain vs raw `Booster.predict(pred_contrib=True)`",
        "",
        f"Same {n:,} rows. Raw: LightGBM alone on the prebuilt float matrix, 1 thread. Batch: "
        f"`score_batch` (chunks of {args.chunk_size:,}: feature preparation, margin, "
        "calibration, score, grade, supervision class, SHAP, top-4 reasons with feature names) "
        f"in process, and `score_batch_dask` on the {args.workers}-worker cluster (model "
        "broadcast once, 2 partitions per worker). Results checked identical.",
        "",
        "| step | wall (s) | rows/s | CPU (s) | CPU vs raw pred_contrib |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rawc = rows["raw_contrib_cpu"]
    for label, key in (
        ("raw `predict(pred_contrib=True)`", "raw_contrib"),
        ("raw `predict(raw_score=True)`", "raw_margin"),
        ("`model.matrix` (preparation only)", "matrix"),
        ("batch, in process", "batch_pandas"),
        ("batch, Dask first call", "batch_dask_cold"),
        ("batch, Dask second call", "batch_dask_warm"),
    ):
        cpu = rows[f"{key}_cpu"]
        lines.append(
            f"| {label} | {rows[key]:.2f} | {rps(rows[key])} | {cpu:.2f} | ×{cpu / rawc:.2f} |"
        )
    lines += [
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_batch.py "
        f"--clean {args.clean} --as-of {args.as_of} --workers {args.workers}"
        + (f" --model-dir {args.model_dir}" if args.model_dir else f" --train {args.train}")
        + f" --out {args.out}`",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    np.testing.assert_array_equal(scores["usc_code"].to_numpy(), ref["usc_code"].to_numpy())


if __name__ == "__main__":
    main()
