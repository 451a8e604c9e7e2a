"""Buyer grade model: training time (panel, fit, evaluation) on simulated worlds of N firms.

Usage::

    nice python benchmarks/bench_buyer_model.py --firms 1500,4000 --out benchmarks/results_buyer_model.md

Each world is simulated (seed 7, 2019-01..2025-12, no faults) and ingested first (not timed);
then the monthly as-of buyer panel is built, the model fitted and evaluated out of time against
the oracle, as ``kuaxin buyers train`` does (without MLflow).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from features.buyer_experience import country_categories
from features.ingest import ingest
from simulator.simulate import simulate
from training.buyer_model import build_panel, evaluate, fit, load_buyer_config, split
from training.buyer_registry import data_end, read_buyer_tables

SCALE = [("A", 0.005), ("B", 0.015), ("C", 0.04), ("D", 1.0)]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(n_firms: int, root: Path) -> dict:
    """Simulate, ingest, then time panel, fit and evaluation."""
    raw, oracle, clean = root / "raw", root / "oracle", root / "clean"
    simulate(
        n_firms=n_firms,
        seed=7,
        start="2019-01",
        end="2025-12",
        out_dir=raw,
        oracle_dir=oracle,
        progress=False,
    )
    ingest(raw, clean, progress=False)
    tables = read_buyer_tables(clean)
    cfg = load_buyer_config()
    out: dict = {"firms": n_firms, "buyers": len(tables["buyers"])}
    c0, t0 = _cpu(), time.perf_counter()
    end = data_end(tables)
    panel = build_panel(tables, end, country_categories(), cfg)
    out["panel_s"], out["panel_cpu"] = time.perf_counter() - t0, _cpu() - c0
    parts = split(panel, end, cfg)
    c0, t0 = _cpu(), time.perf_counter()
    model = fit(parts, cfg)
    out["fit_s"], out["fit_cpu"] = time.perf_counter() - t0, _cpu() - c0
    import pandas as pd

    c0, t0 = _cpu(), time.perf_counter()
    ev = evaluate(model, parts["test"], SCALE, pd.read_parquet(oracle / "buyer_pd"), cfg)
    out["eval_s"], out["eval_cpu"] = time.perf_counter() - t0, _cpu() - c0
    out.update(
        rows=len(panel),
        train_events=int(parts["train"]["label"].sum()),
        test_events=ev["events"],
        kind=model.kind,
        auc=ev["oot"].get("auc"),
        oracle_auc=ev["oracle"]["oracle_auc"],
        gap=ev["oracle"]["auc_gap"],
        gate=ev["gate"]["passed"],
        rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print(out, flush=True)
    return out


def main() -> None:
    """Run every size and write the results table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--firms", default="1500,4000")
    ap.add_argument("--out", default="benchmarks/results_buyer_model.md")
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    for n in (int(x) for x in args.firms.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run(n, Path(tmp)))
    load1 = os.getloadavg()
    lines = [
        "# Buyer grade model training benchmark",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.platform()}, Python {platform.python_version()}, `nproc` = {os.cpu_count()}; shared with other agents' jobs",
        f"- load average before: {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}, after: {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}",
        f"- command: `nice python benchmarks/bench_buyer_model.py --firms {args.firms}`",
        "- CPU = user + system seconds of the process (wall time includes waiting for a core)",
        "",
        "| firms | buyers | panel rows | train / test events | model | panel s (CPU) | fit s (CPU) | eval s (CPU) | OOT AUC | oracle AUC | gap | gate | peak RSS MB |",
        "| ---: | ---: | ---: | ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['firms']:,} | {r['buyers']:,} | {r['rows']:,} | {r['train_events']} / {r['test_events']} | {r['kind']} "
            f"| {r['panel_s']:.1f} ({r['panel_cpu']:.1f}) | {r['fit_s']:.2f} ({r['fit_cpu']:.2f}) | {r['eval_s']:.2f} ({r['eval_cpu']:.2f}) "
            f"| {r['auc']:.3f} | {r['oracle_auc']:.3f} | {r['gap']:.3f} | {r['gate']} | {r['rss']:,.0f} |"
        )
    lines += [
        "",
        "The panel (one as-of date per month, every buyer with history) dominates: it grows with "
        "buyers x months; fitting is a small part of it.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
