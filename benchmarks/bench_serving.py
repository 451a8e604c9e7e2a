"""Benchmark the scoring service over HTTP: score-a-firm latency and throughput against a
trivial endpoint on the same server (the HTTP floor), and against ``mlflow models serve`` of
the same model.

A real uvicorn server (``kuaxin serve``) runs in its own process on 127.0.0.1; the load
generator (asyncio + httpx, keep-alive connections) runs in this process with a fixed number of
concurrent clients, each sending a bounded number of requests. The machine's two cores are
shared by server and client, so the numbers are a floor for one service process, not a
capacity figure. The world (simulated platform -> features -> quick model) is built once under
``--work`` (outside the timings) and reused.

Usage::

    .venv/bin/python benchmarks/bench_serving.py                      # 2,000 firms, 1 and 8 clients
    .venv/bin/python benchmarks/bench_serving.py --requests 3000 --mlflow
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KUAXIN = Path(sys.executable).with_name("kuaxin")
MLFLOW = Path(sys.executable).with_name("mlflow")
RESULTS = ROOT / "benchmarks" / "results_serving.md"


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(list(args), check=True, env=env, stdout=subprocess.DEVNULL)


def build_world(work: Path, firms: int) -> tuple[Path, Path]:
    """Simulated world -> snapshot and a quickly trained model package (reused when present)."""
    snap, model_dir = work / "snapshot.parquet", work / "model"
    if snap.is_file() and (model_dir / "model.json").is_file():
        return snap, model_dir
    raw, clean = work / "raw", work / "clean"
    if not (clean / "ingest_report.json").is_file():
        sh(
            str(KUAXIN),
            "simulate",
            "--firms",
            str(firms),
            "--seed",
            "5",
            "--start",
            "2019-01",
            "--end",
            "2025-06",
            "--out",
            str(raw),
            "--oracle-out",
            str(work / "oracle"),
        )
        sh(str(KUAXIN), "ingest", str(raw), "--out", str(clean))
    sh(str(KUAXIN), "features", str(clean), "--as-of", "2025-07-01", "--out", str(snap))
    ds = work / "train.parquet"
    sh(
        str(KUAXIN),
        "dataset",
        str(clean),
        "--from",
        "2020-01-01",
        "--to",
        "2024-06-01",
        "--every",
        "quarter",
        "--out",
        str(ds),
    )
    import pandas as pd

    from training.train import train_credit

    result = train_credit(pd.read_parquet(ds), trials=0, num_threads=2)
    result.model.save(model_dir)
    return snap, model_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


async def load(
    base: str, requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]], clients: int
) -> dict[str, float]:
    """Send ``requests`` with ``clients`` concurrent keep-alive clients; latency stats in ms."""
    latencies: list[float] = []
    errors = 0
    queue = list(requests[50:])  # the first 50 are the untimed warm-up

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            method, path, body, headers = queue.pop()
            t0 = time.perf_counter()
            r = await client.request(method, path, json=body, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code >= 400

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        for method, path, body, headers in requests[:50]:  # warm-up, not timed
            await client.request(method, path, json=body, headers=headers)
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "n": float(len(lat)),
        "errors": float(errors),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "rps": len(lat) / wall,
    }


def fresh_postgres_schema(base: str, schema: str = "kx_bench_serving") -> str:
    """Recreate ``schema`` in the PostgreSQL database at ``base``; return a URL using it."""
    import sqlalchemy as sa

    engine = sa.create_engine(base, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def kuaxin_server(
    snap: Path, model_dir: Path, work: Path, n_keys: int, database_url: str | None = None
) -> tuple[subprocess.Popen, str, str, list[str]]:
    """Start ``kuaxin serve`` and create a bank key with consents for ``n_keys`` firms."""
    import pandas as pd

    from features.uscc import validate

    if database_url is None:
        db = work / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
    else:
        url = fresh_postgres_schema(database_url)
    env = {**os.environ, "KUAXIN_DATABASE_URL": url}
    sh(str(KUAXIN), "db", "upgrade", env=env)
    key = (
        subprocess.run(
            [str(KUAXIN), "keys", "create", "--role", "bank", "--org", "Bench Bank"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    codes = [
        c for c in pd.read_parquet(snap, columns=["usc_code"])["usc_code"] if validate(c).valid
    ]
    firms = random.Random(1).sample(codes, min(n_keys, len(codes)))
    from datetime import timedelta

    from serving.consent import grant
    from serving.db import Database

    database = Database(url)
    with database.session() as s:
        for f in firms:
            grant(
                s,
                f,
                "Bench Bank",
                ["score", "explanation"],
                "benchmark",
                datetime.now(UTC) + timedelta(days=1),
            )
    database.dispose()
    port = free_port()
    proc = subprocess.Popen(
        [
            str(KUAXIN),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--snapshot",
            str(snap),
            "--model-dir",
            str(model_dir),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/v1/ready", proc)
    return proc, base, key, firms


def mlflow_server(
    model_dir: Path, snap: Path, work: Path
) -> tuple[subprocess.Popen, str, dict[str, Any]]:
    """Log the same model as an MLflow pyfunc (models from code) and ``mlflow models serve`` it."""
    import mlflow
    import pandas as pd

    from training.model import CreditModel

    model = CreditModel.load(model_dir)
    row = pd.read_parquet(snap).iloc[[0]][model.feature_names]
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-serving")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ROOT / "training" / "pyfunc_model.py"),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(ROOT / "training"), str(ROOT / "features")],
        )
    port = free_port()
    log = (work / "mlflow-serve.log").open("w")
    proc = subprocess.Popen(
        [
            str(MLFLOW),
            "models",
            "serve",
            "-m",
            info.model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        # mlflow starts `uvicorn` from PATH: the virtualenv's.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/ping", proc)
    body = {
        "dataframe_split": json.loads(row.to_json(orient="split", index=False, date_format="iso"))
    }
    return proc, base, body


def request_makers(firms: list[str], h: dict[str, str], rng: random.Random) -> dict[str, Any]:
    """Per scenario, a function making one request (method, path, body, headers)."""

    def firm() -> str:
        return rng.choice(firms)

    return {
        "GET /v1/health (trivial, same server)": lambda: ("GET", "/v1/health", None, {}),
        "GET /v1/firms/{usc}/score": lambda: ("GET", f"/v1/firms/{firm()}/score", None, h),
        "GET /v1/firms/{usc}/explanation": lambda: (
            "GET",
            f"/v1/firms/{firm()}/explanation",
            None,
            h,
        ),
        "POST /v1/firms/{usc}/what-if": lambda: (
            "POST",
            f"/v1/firms/{firm()}/what-if",
            {"changes": {"refund_rate_6m": 0.01}},
            h,
        ),
    }


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kx_bench_serving"))
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per scenario")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--mlflow", action="store_true", help="also benchmark `mlflow models serve`"
    )
    parser.add_argument(
        "--postgres",
        default=None,
        help="also run the service on this PostgreSQL URL (schema kx_bench_serving, recreated)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    snap, model_dir = build_world(args.work, args.firms)
    rows: list[tuple[str, int, dict[str, float]]] = []
    backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    for label, database_url in backends:
        proc, base, key, firms = kuaxin_server(snap, model_dir, args.work, 200, database_url)
        rng = random.Random(7)
        h = {"X-API-Key": key}
        try:
            scenarios = request_makers(firms, h, rng)
            for name, make in scenarios.items():
                for c in args.clients:
                    stats = asyncio.run(load(base, [make() for _ in range(args.requests + 50)], c))
                    rows.append((f"{name} [{label}]", c, stats))
                    print(
                        f"{label:10s} {name:40s} clients={c:2d} p50={stats['p50']:.2f} ms "
                        f"p99={stats['p99']:.2f} ms rps={stats['rps']:.0f} errors={stats['errors']:.0f}"
                    )
        finally:
            stop(proc)
    if args.mlflow:
        proc, base, body = mlflow_server(model_dir, snap, args.work)
        try:
            for c in args.clients:
                reqs = [("POST", "/invocations", body, {}) for _ in range(args.requests + 50)]
                stats = asyncio.run(load(base, reqs, c))
                rows.append(("POST /invocations (mlflow models serve, 1 row)", c, stats))
                print(
                    f"mlflow clients={c} p50={stats['p50']:.2f} p99={stats['p99']:.2f} rps={stats['rps']:.0f} errors={stats['errors']:.0f}"
                )
        finally:
            stop(proc)
    write_results(rows, args)


def write_results(rows: list[tuple[str, int, dict[str, float]]], args: argparse.Namespace) -> None:
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Serving benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: `nproc` = {os.cpu_count()}, "
        f"Python {platform.python_version()}. Load average at the end of the run: "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min; other jobs share the machine).",
        "",
        "```",
        free,
        "```",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_serving.py --firms {args.firms} --requests {args.requests} "
        f"--clients {' '.join(map(str, args.clients))}{' --mlflow' if args.mlflow else ''}"
        f"{' --postgres ' + args.postgres if args.postgres else ''}`",
        "",
        "One uvicorn process (`kuaxin serve`, access log off) on 127.0.0.1, with its database on SQLite",
        "(a file; synchronous=FULL) or PostgreSQL (same machine); the load",
        "generator (asyncio + httpx keep-alive clients) shares the same two cores. Each firm-data",
        "request checks the key and the consent in the database and appends a hash-chained audit row",
        "before answering; the health endpoint does none of that (the HTTP floor).",
        "",
        "| endpoint | clients | requests | p50 ms | p99 ms | req/s | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, c, s in rows:
        lines.append(
            f"| {name} | {c} | {s['n']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['rps']:.0f} | {s['errors']:.0f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
