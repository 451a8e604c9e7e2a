"""Benchmark ``POST /v1/firms/{usc}/matches`` with recourse: first-call latency and plan quality.

Each firm gets one enterprise key and one ``/matches`` call with recourse through the ASGI app
in process (the route, the key check and the audit row as served, no network), on a fresh
bundle memo, so every call is a first call that searches. For every product whose plan was
searched the benchmark records whether it was reached, its cost and changes, and checks it:
the firm's features with the plan's changes, scored again through ``CreditModel.score`` (the
DataFrame path), must pass every rule of the product when the plan says ``reached``.

``--trees A B`` compares source trees (e.g. ``main`` and a branch) in one run: the firms are
split into chunks and each chunk runs in a subprocess per tree, alternating A, B, A, B, so a
change in the machine's load hits both alike. The world (snapshot and a quickly trained model)
is the one ``bench_serving.py`` builds and reuses.

Usage::

    git worktree add ../kuaxin-before <commit>    # the code to compare against
    .venv/bin/python benchmarks/bench_matches.py --trees ../kuaxin-before . --firms-sampled 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEED = {"amount_cny": 500000, "purpose": "working_capital", "tenor_months": 6, "recourse": True}


def _verify(loaded: Any, product: Any, row: dict[str, Any], plan: dict[str, Any]) -> bool:
    """Whether the plan's changes, re-scored by the DataFrame path, pass every product rule."""
    import pandas as pd

    from tradefinance.rules import evaluate_rules

    changed = {**row, **{c["feature"]: c["after"] for c in plan["changes"]}}
    features = {n: changed[n] for n in loaded.model.feature_names}
    scored = loaded.model.score(pd.DataFrame([features]), num_threads=1).iloc[0].to_dict()
    trace = evaluate_rules(product.rules, {**changed, **scored}, loaded.grades)
    return all(t.passed for t in trace)


def measure(snap: Path, model_dir: Path, firms: list[str], work: Path) -> list[dict[str, Any]]:
    """First ``/matches`` call with recourse for each firm; latency and every searched plan."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from features.catalog import load_catalog
    from serving.app import create_app
    from serving.auth import create_key
    from serving.db import Database, upgrade
    from serving.market import firm_row, load_market
    from serving.settings import Settings
    from serving.state import ServingState, build
    from training.model import CreditModel

    model = CreditModel.load(model_dir)
    loaded = build(
        model,
        pd.read_parquet(snap),
        catalog=load_catalog(),
        model_source="bench model",
        snapshot_source="bench snapshot",
    )
    work.mkdir(parents=True, exist_ok=True)
    db_file = work / f"matches-{os.getpid()}.db"
    db_file.unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        load_on_start=False,
        migrate_on_start=False,
        rate_limits_enabled=False,
    )
    db = Database(url)
    keys: dict[str, str] = {}
    with db.session() as s:
        for usc in firms:
            keys[usc], _ = create_key(s, "enterprise", "the firm", usc)
    db.dispose()
    products = {p.id: p for p in load_market().products}
    out: list[dict[str, Any]] = []
    with TestClient(create_app(settings, ServingState(loaded))) as client:
        for usc in firms:
            started = time.perf_counter()
            answer = client.post(
                f"/v1/firms/{usc}/matches", json=NEED, headers={"X-API-Key": keys[usc]}
            )
            ms = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                out.append({"usc": usc, "ms": ms, "status": answer.status_code, "plans": []})
                continue
            row = firm_row(loaded, usc)
            plans = []
            for m in answer.json()["financing"] + answer.json()["insurance"]:
                plan = (m.get("recourse") or {}).get("plan")
                if not plan or not plan.get("searched"):
                    continue
                plans.append(
                    {
                        "product": m["product_id"],
                        "reached": bool(plan["reached"]),
                        "cost": sum(c["cost"] for c in plan["changes"]),
                        "changes": len(plan["changes"]),
                        "verified": _verify(loaded, products[m["product_id"]], row, plan),
                    }
                )
            out.append({"usc": usc, "ms": ms, "status": 200, "plans": plans})
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency percentiles and plan quality of one tree's rows."""
    ms = sorted(r["ms"] for r in rows)
    plans = [p for r in rows for p in r["plans"]]
    reached = [p for p in plans if p["reached"]]

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    return {
        "calls": len(rows),
        "p50_ms": statistics.median(ms),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "max_ms": ms[-1],
        "plans": len(plans),
        "reached": len(reached),
        "reached_share": len(reached) / len(plans) if plans else float("nan"),
        "reached_verified": sum(p["verified"] for p in reached),
        "mean_cost_reached": statistics.fmean(p["cost"] for p in reached) if reached else None,
        "mean_changes_reached": (
            statistics.fmean(p["changes"] for p in reached) if reached else None
        ),
    }


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Plan quality on the (firm, product) pairs both trees searched."""
    pa = {(r["usc"], p["product"]): p for r in a for p in r["plans"]}
    pb = {(r["usc"], p["product"]): p for r in b for p in r["plans"]}
    both = sorted(set(pa) & set(pb))
    both_reached = [k for k in both if pa[k]["reached"] and pb[k]["reached"]]
    return {
        "pairs": len(both),
        "only_a_reached": sum(pa[k]["reached"] and not pb[k]["reached"] for k in both),
        "only_b_reached": sum(pb[k]["reached"] and not pa[k]["reached"] for k in both),
        "both_reached": len(both_reached),
        "mean_cost_a": statistics.fmean(pa[k]["cost"] for k in both_reached)
        if both_reached
        else None,
        "mean_cost_b": statistics.fmean(pb[k]["cost"] for k in both_reached)
        if both_reached
        else None,
        "b_cheaper": sum(pb[k]["cost"] < pa[k]["cost"] - 1e-9 for k in both_reached),
        "a_cheaper": sum(pa[k]["cost"] < pb[k]["cost"] - 1e-9 for k in both_reached),
    }


def _sample(snap: Path, n: int, seed: int) -> list[str]:
    """``n`` performing firms of the snapshot, drawn with a fixed seed."""
    import numpy as np
    import pandas as pd

    codes = pd.read_parquet(snap, columns=["usc_code"])["usc_code"].astype(str).tolist()
    rng = np.random.default_rng(seed)
    return [codes[i] for i in rng.choice(len(codes), size=min(n, len(codes)), replace=False)]


def main() -> None:
    """Run the comparison (driver) or one chunk of one tree (``--child``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/kx_bench13"))
    parser.add_argument("--firms", type=int, default=5000, help="simulated firms of the world")
    parser.add_argument("--trees", type=Path, nargs="+", default=[ROOT], help="source trees")
    parser.add_argument("--firms-sampled", type=int, default=300, help="firms called")
    parser.add_argument("--chunks", type=int, default=4, help="interleaved chunks per tree")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=None, help="JSON of every call")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    snap, model_dir = args.work / "snapshot.parquet", args.work / "model"
    if args.child is not None:
        firms = json.loads(args.child.read_text())
        rows = measure(snap, model_dir, firms, args.work)
        args.child.write_text(json.dumps(rows))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_serving import build_world, load_avg

    build_world(args.work, args.firms)
    firms = _sample(snap, args.firms_sampled, args.seed)
    size = -(-len(firms) // args.chunks)
    results: dict[str, list[dict[str, Any]]] = {str(t): [] for t in args.trees}
    loads = []
    for k in range(args.chunks):
        chunk = firms[k * size : (k + 1) * size]
        for tree in args.trees:
            job = args.work / f"matches-chunk-{os.getpid()}.json"
            job.write_text(json.dumps(chunk))
            env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
            loads.append(load_avg())
            me = str(Path(__file__).resolve())
            subprocess.run(
                [sys.executable, me, "--work", str(args.work), "--child", str(job)],
                check=True,
                env=env,
                cwd=tree,
            )
            got = json.loads(job.read_text())
            results[str(tree)] += got
            print(f"chunk {k} {tree}: {summary(got)} load {loads[-1]}", flush=True)
    report: dict[str, Any] = {"load": loads}
    for tree, rows in results.items():
        report[tree] = summary(rows)
    if len(args.trees) == 2:
        report["paired"] = paired(*(results[str(t)] for t in args.trees))
    print(json.dumps(report, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps({"report": report, "calls": results}))


if __name__ == "__main__":
    main()
