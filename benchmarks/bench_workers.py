"""Where the CPU of a score request goes with one and with two workers (an A/B profile).

``bench_serving.py`` gives the ratios; this script explains them. For each configuration
(database, workers, audit linger) it starts ``kuaxin serve`` on the same simulated world as
``bench_serving.py`` (built there, reused), then runs ``wrk`` on the score endpoint (or health)
in interleaved repetitions and records per run:

* requests/s, p50 and p99 (wrk);
* CPU used by the server's processes (the supervisor and its workers) and by the PostgreSQL
  backends that lived through the run, in cores (psutil), and the machine's busy share;
* the server's CPU per answered request (ms);
* audit rows per commit: rows the run added over distinct batch timestamps (a batch stamps all
  its rows with one ``ts``).

A configuration may name another checkout (``pg:2:3@/path/to/tree``): its servers run that
tree's code, interleaved with this tree's, so a change is judged within one run (this VM's
speed swings by a quarter between runs minutes apart). It prints one markdown table of the
medians. Usage::

    .venv/bin/python benchmarks/bench_workers.py --work /tmp/kx_b3 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --configs pg:1:3 pg:2:3 --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as bs  # the sibling benchmark's world and server helpers

COLUMNS = (
    "rps",
    "p50",
    "p99",
    "server_cores",
    "pg_cores",
    "busy",
    "ms_per_request",
    "rows_per_commit",
)


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def _postgres() -> dict[int, psutil.Process]:
    found = {}
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            found[p.pid] = p
    return found


def _audit_counts(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows, batches = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT ts) FROM audit_log")
        ).one()
    engine.dispose()
    return int(rows), int(batches)


def profile_run(
    server: bs.Server, wrk: str, endpoint: str, conns: int, seconds: float
) -> dict[str, float]:
    """One wrk run against ``server`` with CPU per process group and audit batching."""
    top = psutil.Process(server.proc.pid)
    procs = [top, *top.children(recursive=True)]
    pg_before = {pid: _cpu(p) for pid, p in _postgres().items()}
    rows0, batches0 = _audit_counts(server.url)
    cpu0 = sum(c for p in procs if (c := _cpu(p)) is not None)
    t0 = time.monotonic()
    if endpoint == "score":
        paths = [f"/v1/firms/{f}/score" for f in server.firms]
        res = bs.run_wrk(wrk, server.base, paths, conns, seconds, headers={"X-API-Key": server.key})
    else:
        res = bs.run_wrk(wrk, server.base, ["/v1/health"], conns, seconds)
    wall = time.monotonic() - t0
    cpu1 = sum(c for p in procs if (c := _cpu(p)) is not None)
    pg = 0.0
    for pid, p in _postgres().items():
        before, after = pg_before.get(pid), _cpu(p)
        if before is not None and after is not None:  # backends that lived through the run
            pg += after - before
    rows1, batches1 = _audit_counts(server.url)
    answered = max(res["rps"] * wall, 1.0)
    return {
        "rps": res["rps"],
        "p50": res["p50"],
        "p99": res["p99"],
        "server_cores": (cpu1 - cpu0) / wall,
        "pg_cores": pg / wall,
        "busy": res["cpu"],
        "ms_per_request": (cpu1 - cpu0) / answered * 1000,
        "rows_per_commit": (rows1 - rows0) / max(batches1 - batches0, 1),
    }


def main() -> None:
    """Run the configurations interleaved and print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/kx_bench"))
    ap.add_argument("--firms", type=int, default=5000)
    ap.add_argument("--postgres", default=os.environ.get("KUAXIN_TEST_POSTGRES_URL"))
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["pg:1:3", "pg:2:3"],
        help="database:workers:linger_ms[@DIR], database sqlite or pg; @DIR serves the code of"
        " another checkout (A/B of a change, interleaved with this tree's)",
    )
    ap.add_argument("--endpoint", choices=["score", "health"], default="score")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    snap, model_dir = bs.build_world(args.work, args.firms)
    wrk = bs.ensure_wrk()
    servers: dict[str, bs.Server] = {}
    try:
        for cfg in args.configs:
            spec, _, tree = cfg.partition("@")
            database, workers, linger = spec.split(":")
            if database == "pg" and not args.postgres:
                raise SystemExit(f"{cfg}: --postgres (or KUAXIN_TEST_POSTGRES_URL) is needed")
            os.environ["KUAXIN_AUDIT_LINGER_MS"] = linger
            name = f"prof-{database}-w{workers}-l{linger}-{len(servers)}"
            root = bs.ROOT
            if tree:  # start_server puts bs.ROOT first on the server's PYTHONPATH
                bs.ROOT = Path(tree).resolve()
            try:
                servers[cfg] = bs.start_server(
                    name,
                    snap,
                    model_dir,
                    args.work,
                    "sqlite" if database == "sqlite" else args.postgres,
                    int(workers),
                )
            finally:
                bs.ROOT = root
        runs: dict[str, list[dict[str, float]]] = {cfg: [] for cfg in args.configs}
        for rep in range(args.reps):
            for cfg, server in servers.items():
                out = profile_run(server, wrk, args.endpoint, args.conns, args.seconds)
                runs[cfg].append(out)
                shown = ", ".join(f"{k} {v:.3g}" for k, v in out.items())
                print(f"rep {rep + 1} {cfg}: {shown} (load {bs.load_avg()})", flush=True)
    finally:
        for server in servers.values():
            bs.stop(server.proc)
    print(f"\n{args.endpoint}, {args.conns} connections, medians of {args.reps} runs:\n")
    print("| config (db:workers:linger ms) | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " ---: |" * len(COLUMNS))
    for cfg, rs in runs.items():
        cells: list[Any] = [statistics.median(r[c] for r in rs) for c in COLUMNS]
        shown = [
            f"{v:,.0f}" if c == "rps" else f"{v:.2f}" for c, v in zip(COLUMNS, cells, strict=True)
        ]
        print(f"| {cfg} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
