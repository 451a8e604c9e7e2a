"""Benchmark the scoring service over HTTP with a C load generator (``wrk``) and a Python one.

Ratios are what this benchmark is for: every configuration runs in the same session,
interleaved (repetition 1 of every point, then repetition 2, ...), so a change in the machine's
load hits all of them alike; the load average is recorded at every point. Points:

* ``GET /v1/health`` (the HTTP floor of the same server) and ``GET /v1/firms/{usc}/score`` (key,
  consent, group-committed audit row) at 1 and 16 connections, on SQLite and PostgreSQL, with
  1 and 2 workers (``kuaxin serve --workers N``); ``mlflow models serve`` of the same model
  (1-row ``/invocations``) at 1 and 16 connections;
* after every score run: the audit rows added, the answers ``wrk`` counted and ``audit verify``;
* the Python client (bounded request counts, so audit rows must equal answers exactly) on
  score, explanation, what-if, batch scoring (firms/s) and ``/matches`` with recourse;
* in process: the one-row path (``score_row`` of a feature dict) against the raw booster call;
* start-up of a worker on snapshots of 5k / 50k / 200k firms with the precomputed file present
  (the larger snapshots repeat the simulated firms under new codes: start-up depends on rows,
  not on what they hold).

``wrk`` comes from Debian's packages: the setup runs ``apt-get install -y wrk`` when it is
missing. Servers and load generators share the machine's cores, so the absolute numbers are a
floor; the ratios are the result.

Usage::

    .venv/bin/python benchmarks/bench_serving.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KUAXIN = Path(sys.executable).with_name("kuaxin")
MLFLOW = Path(sys.executable).with_name("mlflow")
RESULTS = ROOT / "benchmarks" / "results_serving.md"
ORG = "Bench Bank"


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(list(args), check=True, env=env, stdout=subprocess.DEVNULL)


def ensure_wrk() -> str:
    """Return the path of ``wrk``, installing Debian's package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk)", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def build_world(work: Path, firms: int) -> tuple[Path, Path]:
    """Simulated world -> snapshot and a quickly trained model package (reused when present)."""
    snap, model_dir = work / "snapshot.parquet", work / "model"
    if snap.is_file() and (model_dir / "model.json").is_file():
        return snap, model_dir
    raw, clean = work / "raw", work / "clean"
    if not (clean / "ingest_report.json").is_file():
        sh(
            *(str(KUAXIN), "simulate", "--firms", str(firms), "--seed", "5"),
            *("--start", "2019-01", "--end", "2025-06", "--out", str(raw)),
            *("--oracle-out", str(work / "oracle")),
        )
        sh(str(KUAXIN), "ingest", str(raw), "--out", str(clean))
    sh(str(KUAXIN), "features", str(clean), "--as-of", "2025-07-01", "--out", str(snap))
    ds = work / "train.parquet"
    sh(
        *(str(KUAXIN), "dataset", str(clean), "--from", "2020-01-01", "--to", "2024-06-01"),
        *("--every", "quarter", "--out", str(ds)),
    )
    import pandas as pd

    from training.train import train_credit

    result = train_credit(pd.read_parquet(ds), trials=0, num_threads=2)
    result.model.save(model_dir)
    return snap, model_dir


def grow_snapshot(snap: Path, n: int, out: Path) -> Path:
    """A snapshot of ``n`` firms: the simulated ones repeated under new valid codes."""
    if out.is_file():
        return out
    import pandas as pd

    from features.uscc import generate

    base = pd.read_parquet(snap)
    reps = -(-n // len(base))
    frame = pd.concat([base] * reps, ignore_index=True).iloc[:n].copy()
    codes = generate(np.random.default_rng(13), n + len(base))
    taken = set(base["usc_code"])
    fresh = [c for c in dict.fromkeys(codes) if c not in taken][:n]
    if len(fresh) < n:
        raise SystemExit(f"could not generate {n} distinct codes")
    frame["usc_code"] = fresh
    if "name" in frame.columns:
        frame["name"] = [f"Bench firm {i}" for i in range(n)]
    frame.to_parquet(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 900) -> float:
    """Wait for ``url`` to answer 200; return the seconds it took."""
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.time() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def fresh_postgres_schema(base: str, schema: str) -> str:
    """Recreate ``schema`` in the PostgreSQL database at ``base``; return a URL using it."""
    import sqlalchemy as sa

    engine = sa.create_engine(base, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@dataclass
class Server:
    """A running ``kuaxin serve`` with a bank key and consents for some firms."""

    name: str
    proc: subprocess.Popen
    base: str
    url: str
    key: str
    firms: list[str]
    startup_s: float
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def audit(self) -> tuple[int, bool, str]:
        """Audit rows, and whether ``kuaxin audit verify`` passes (its output line)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            rows = int(conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one())
        engine.dispose()
        out = subprocess.run(
            [str(KUAXIN), "audit", "verify", "--database-url", self.url],
            capture_output=True,
            text=True,
        )
        return rows, out.returncode == 0, (out.stdout + out.stderr).strip().splitlines()[-1]


def start_server(
    name: str,
    snap: Path,
    model_dir: Path,
    work: Path,
    database: str,
    workers: int,
    n_firms: int = 200,
) -> Server:
    """Start ``kuaxin serve`` (fresh database) and grant a bank key consents for firms."""
    import pandas as pd

    from features.uscc import validate
    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database, upgrade

    if database == "sqlite":
        db = work / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
    else:
        url = fresh_postgres_schema(database, f"kx_bench_{name.replace('-', '_')}")
    upgrade(url)
    codes = [
        c for c in pd.read_parquet(snap, columns=["usc_code"])["usc_code"] if validate(c).valid
    ]
    firms = random.Random(1).sample(codes, min(n_firms, len(codes)))
    database_ = Database(url)
    with database_.session() as s:
        key, _ = create_key(s, "bank", ORG)
        for f in firms:
            expires = datetime.now(UTC) + timedelta(days=1)
            grant(s, f, ORG, ["score", "explanation"], "benchmark", expires)
    database_.dispose()
    port = free_port()
    log = work / f"serve-{name}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KUAXIN_DATABASE_URL": url,
        "KUAXIN_PRECOMPUTE_DIR": str(work / "precomputed"),
        # The per-key and per-address rate limits (100/s, 300/s by default) would answer most
        # of the load with 429: the benchmark measures the service's capacity, not its limits.
        "KUAXIN_RATE_LIMITS_ENABLED": "false",
    }
    cmd = [
        *(str(KUAXIN), "serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--snapshot", str(snap), "--model-dir", str(model_dir), "--workers", str(workers)),
        *("--log-level", "info", "--no-access-log"),
    ]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/v1/ready", proc)
    # /ready answers from the first worker up: wait until every worker has logged its load.
    deadline = time.time() + 600
    while time.time() < deadline:
        if len(re.findall(r"serving model .* \(worker \d+", log.read_text())) >= workers:
            break
        time.sleep(0.2)
    return Server(name, proc, base, url, key, firms, time.time() - t0, log)


def mlflow_server(model_dir: Path, snap: Path, work: Path) -> tuple[subprocess.Popen, str, str]:
    """Log the same model as an MLflow pyfunc and ``mlflow models serve`` it; body of 1 row."""
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
            *(str(MLFLOW), "models", "serve", "-m", info.model_uri, "--env-manager", "local"),
            *("-h", "127.0.0.1", "-p", str(port), "-w", "1"),
        ],
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
    return proc, base, json.dumps(body)


WRK_SCRIPT = """
local paths = {%(paths)s}
local method, body = "%(method)s", %(body)s
local headers = {%(headers)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format(method, paths[(i %% #paths) + 1], headers, body)
end
done = function(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  f:write(string.format(
    '{"requests":%%d,"duration_us":%%d,"non2xx":%%d,"socket_errors":%%d,"p50":%%f,"p99":%%f}',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0))
  f:close()
end
"""


def lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid Lua string literal for these characters


def run_wrk(
    wrk: str,
    base: str,
    paths: list[str],
    conns: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
) -> dict[str, float]:
    """One ``wrk`` run (1 thread); requests/s, p50/p99 ms, answers and errors."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        script = Path(tmp) / "s.lua"
        hdrs = {**(headers or {})}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        script.write_text(
            WRK_SCRIPT
            % {
                "paths": ", ".join(lua_str(p) for p in paths),
                "method": method,
                "body": lua_str(body) if body is not None else "nil",
                "headers": ", ".join(f"[{lua_str(k)}] = {lua_str(v)}" for k, v in hdrs.items()),
                "out": str(out),
            }
        )
        before = cpu_times()
        subprocess.run(
            [wrk, "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency", "-s", str(script), base],
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )
        busy = cpu_busy(before, cpu_times())
        res = json.loads(out.read_text())
    return {
        # Share of all cores busy during the run (server, database and wrk together).
        "cpu": busy,
        # Only 2xx answers count: a 429 or 503 is not served work.
        "rps": (res["requests"] - res["non2xx"]) / (res["duration_us"] / 1e6),
        "p50": res["p50"],
        "p99": res["p99"],
        "requests": res["requests"],
        "non2xx": res["non2xx"],
        "socket_errors": res["socket_errors"],
    }


async def py_load(
    base: str, reqs: list[tuple[str, str, Any, dict[str, str]]], clients: int, warmup: int = 20
) -> dict[str, float]:
    """Send ``reqs`` with ``clients`` keep-alive clients (httpx); latency stats in ms."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue = list(reqs[warmup:])

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            method, path, body, headers = queue.pop()
            t0 = time.perf_counter()
            r = await client.request(method, path, json=body, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        for method, path, body, headers in reqs[:warmup]:
            r = await client.request(method, path, json=body, headers=headers)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "n": float(len(lat)),
        "ok": float(codes.get(200, 0)),
        "errors": float(sum(v for k, v in codes.items() if k >= 400)),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "rps": len(lat) / wall,
    }


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from ``/proc/stat`` ((0, 0) where there is none)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Share of the machine's cores busy between two :func:`cpu_times` readings (0..1)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")


def one_row_path(model_dir: Path, snap: Path, n: int = 3000) -> dict[str, float]:
    """Microseconds per call: raw booster, ``score_row`` of a feature dict, DataFrame path."""
    import pandas as pd

    from training.model import CreditModel

    model = CreditModel.load(model_dir)
    frame = pd.read_parquet(snap)
    records = frame.head(200).to_dict("records")
    x = model.matrix(frame.head(200))

    def per_call(fn: Any, calls: int) -> float:
        for i in range(50):
            fn(i)
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        return (time.perf_counter() - t0) / calls * 1e6

    out: dict[str, float] = {}
    for rep in range(3):  # interleaved repetitions; medians are reported
        raw = per_call(
            lambda i: model.booster.predict(x[[i % 200]], raw_score=True, num_threads=1), n
        )
        fast = per_call(lambda i: model.score_row(records[i % 200]), n)
        frame1 = per_call(lambda i: model.score(frame.iloc[[i % 200]], num_threads=1), n // 20)
        for k, v in (("raw", raw), ("fast", fast), ("frame", frame1)):
            out.setdefault(k, 0.0)
            out[f"{k}_{rep}"] = v
    for k in ("raw", "fast", "frame"):
        out[k] = statistics.median(out[f"{k}_{r}"] for r in range(3))
    return out


def startup_points(
    snap: Path, model_dir: Path, work: Path, sizes: list[int], budget_s: float
) -> list[dict[str, Any]]:
    """Precompute time and worker start-up (precomputed file present) per snapshot size."""
    from serving import precomputed
    from serving.loading import read_snapshot
    from training.model import CreditModel

    model = CreditModel.load(model_dir)
    rows: list[dict[str, Any]] = []
    spent = 0.0
    for n in sizes:
        if spent > budget_s:
            rows.append({"firms": n, "skipped": f"time budget of {budget_s:.0f} s used up"})
            continue
        t0 = time.time()
        path = grow_snapshot(snap, n, work / f"snapshot_{n}.parquet")
        frame = read_snapshot(path)
        t1 = time.time()
        pre = precomputed.ensure(model, frame, path, work / "precomputed")
        t_pre = time.time() - t1
        del frame, pre
        server = start_server(f"startup{n}", path, model_dir, work, "sqlite", 1, n_firms=5)
        logged = re.search(r"firms in ([0-9.]+) s", server.log.read_text())
        rows.append(
            {
                "firms": n,
                "precompute_s": t_pre,
                "ready_s": server.startup_s,
                "load_logged_s": float(logged.group(1)) if logged else float("nan"),
                "load": load_avg(),
            }
        )
        stop(server.proc)
        spent += time.time() - t0
        print(f"start-up {n} firms: {rows[-1]}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Point:
    """One measured configuration and its repetitions."""

    server: str
    endpoint: str
    conns: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return float(statistics.median(r[key] for r in self.runs))


def http_points(args: argparse.Namespace, wrk: str, snap: Path, model_dir: Path) -> dict[str, Any]:
    """Every server up at once, then interleaved wrk repetitions over all points."""
    servers: dict[str, Server] = {}
    configs = [("sqlite-w1", "sqlite", 1), ("sqlite-w2", "sqlite", 2)]
    if args.postgres:
        configs += [("pg-w1", args.postgres, 1), ("pg-w2", args.postgres, 2)]
    mlflow_proc = None
    try:
        for name, database, workers in configs:
            servers[name] = start_server(name, snap, model_dir, args.work, database, workers)
            print(f"{name} ready in {servers[name].startup_s:.1f} s", flush=True)
        points: list[Point] = []
        for name in servers:
            for endpoint in ("health", "score"):
                for c in args.conns:
                    points.append(Point(name, endpoint, c))
        if args.mlflow:
            mlflow_proc, mlflow_base, mlflow_body = mlflow_server(model_dir, snap, args.work)
            for c in args.conns:
                points.append(Point("mlflow", "invocations", c))
        for rep in range(args.reps):
            for pt in points:
                run = _one_wrk(
                    wrk,
                    pt,
                    servers,
                    args.seconds,
                    locals().get("mlflow_base"),
                    locals().get("mlflow_body"),
                )
                run["rep"], run["load"] = rep + 1, load_avg()
                pt.runs.append(run)
                print(f"rep {rep + 1} {pt.server} {pt.endpoint} c={pt.conns}: {run}", flush=True)
        py = python_points(args, servers)
        return {
            "points": points,
            "python": py,
            "startup": {n: s.startup_s for n, s in servers.items()},
        }
    finally:
        for server in servers.values():
            stop(server.proc)
        if mlflow_proc is not None:
            stop(mlflow_proc)


def _one_wrk(
    wrk: str, pt: Point, servers: dict[str, Server], seconds: float, mlflow_base: Any, body: Any
) -> dict[str, Any]:
    if pt.server == "mlflow":
        return run_wrk(
            wrk, mlflow_base, ["/invocations"], pt.conns, seconds, method="POST", body=body
        )
    server = servers[pt.server]
    if pt.endpoint == "health":
        return run_wrk(wrk, server.base, ["/v1/health"], pt.conns, seconds)
    before, _, _ = server.audit()
    paths = [f"/v1/firms/{f}/score" for f in server.firms]
    run = run_wrk(wrk, server.base, paths, pt.conns, seconds, headers={"X-API-Key": server.key})
    time.sleep(0.5)  # let requests cut off at the end of the run finish their audit row
    after, ok, line = server.audit()
    run.update(
        audit_rows=after - before,
        answers=run["requests"] - run["non2xx"],
        verify_ok=ok,
        verify=line,
    )
    return run


def python_points(args: argparse.Namespace, servers: dict[str, Server]) -> list[dict[str, Any]]:
    """The Python client: exact audit counts, and the endpoints wrk does not drive."""
    out: list[dict[str, Any]] = []
    for name in ("sqlite-w1", "pg-w1"):
        if name in servers:
            out += _python_server(args, name, servers[name], random.Random(7))
    return out


def _python_server(
    args: argparse.Namespace, name: str, server: Server, rng: random.Random
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    h = {"X-API-Key": server.key}

    def firm() -> str:
        return rng.choice(server.firms)

    def score() -> tuple[str, str, Any, dict[str, str]]:
        return ("GET", f"/v1/firms/{firm()}/score", None, h)

    def explanation() -> tuple[str, str, Any, dict[str, str]]:
        return ("GET", f"/v1/firms/{firm()}/explanation", None, h)

    def what_if() -> tuple[str, str, Any, dict[str, str]]:
        return ("POST", f"/v1/firms/{firm()}/what-if", {"changes": {"refund_rate_6m": 0.01}}, h)

    def batch() -> tuple[str, str, Any, dict[str, str]]:
        return ("POST", "/v1/scores/batch", {"usc_codes": rng.sample(server.firms, 100)}, h)

    scenarios: list[tuple[str, int, int, Any]] = [
        ("GET /v1/firms/{usc}/score", 1, args.requests, score),
        ("GET /v1/firms/{usc}/score", 16, args.requests, score),
        ("GET /v1/firms/{usc}/explanation", 1, args.requests // 2, explanation),
        ("POST /v1/firms/{usc}/what-if", 1, args.requests // 2, what_if),
        ("POST /v1/scores/batch (100 firms)", 1, 60, batch),
    ]
    for label, c, n, make in scenarios:
        before, _, _ = server.audit()
        stats = asyncio.run(py_load(server.base, [make() for _ in range(n + 20)], c))
        after, ok, _ = server.audit()
        per = 100 if "batch" in label else 1
        stats.update(
            server=name,
            endpoint=label,
            conns=c,
            audit_rows=after - before,
            answers=stats["ok"] * per,
            verify_ok=ok,
            load=load_avg(),
        )
        if "batch" in label:
            stats["firms_per_s"] = stats["rps"] * 100
        out.append(stats)
        print(f"python {name} {label} c={c}: {stats}", flush=True)
    # /matches with recourse: first calls for distinct firms (searches), then the same again.
    body = {"amount_cny": 500000, "purpose": "working_capital", "tenor_months": 6}
    firms = server.firms[: args.matches]
    for label in ("first call per firm", "repeat"):
        reqs = [("POST", f"/v1/firms/{f}/matches", {**body, "recourse": True}, h) for f in firms]
        stats = asyncio.run(py_load(server.base, reqs, 1, warmup=0))
        stats.update(
            server=name,
            endpoint=f"POST /v1/firms/{{usc}}/matches ({label})",
            conns=1,
            load=load_avg(),
        )
        out.append(stats)
        print(f"python {name} matches {label}: {stats}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=5000, help="simulated firms")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kx_bench13"))
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--conns", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=1000, help="Python-client requests")
    parser.add_argument("--matches", type=int, default=30, help="firms for /matches")
    parser.add_argument("--startup", type=int, nargs="*", default=[5000, 50000, 200000])
    parser.add_argument("--startup-budget", type=float, default=1500.0, help="seconds")
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false")
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL (schemas recreated)")
    parser.add_argument(
        "--only-startup", action="store_true", help="measure start-up only; append to the results"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    if args.only_startup:
        snap, model_dir = build_world(args.work, args.firms)
        rows = startup_points(snap, model_dir, args.work, args.startup, args.startup_budget)
        append_startup(args, started, rows)
        return
    loads = [load_avg()]
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    snap, model_dir = build_world(args.work, args.firms)
    fast = one_row_path(model_dir, snap)
    print(f"one-row path: {fast}", flush=True)
    http = http_points(args, wrk, snap, model_dir)
    loads.append(load_avg())
    startup = startup_points(snap, model_dir, args.work, args.startup, args.startup_budget)
    loads.append(load_avg())
    write_results(args, started, loads, wrk_version, fast, http, startup)


def startup_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of start-up points (header included)."""
    lines = [
        "| firms | precompute (once, s) | worker ready (wall, s) | load logged (s) | load avg |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['firms']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(
                f"| {r['firms']} | {r['precompute_s']:.1f} | {r['ready_s']:.1f} | "
                f"{r['load_logged_s']:.1f} | {r['load']} |"
            )
    return lines


def append_startup(args: argparse.Namespace, started: datetime, rows: list[dict[str, Any]]) -> None:
    """Append a start-up-only run to ``results_serving.md``."""
    lines = [
        "",
        f"### Start-up run {started:%Y-%m-%d %H:%M}–{datetime.now(UTC):%H:%M} UTC "
        f"(`bench_serving.py {' '.join(sys.argv[1:])}`)",
        "",
    ]
    lines += startup_table(rows)
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def write_results(
    args: argparse.Namespace,
    started: datetime,
    loads: list[str],
    wrk_version: str,
    fast: dict[str, float],
    http: dict[str, Any],
    startup: list[dict[str, Any]],
) -> None:
    """Write ``benchmarks/results_serving.md``: the tables, then the ratios of the issue."""
    points: list[Point] = http["points"]
    by = {(p.server, p.endpoint, p.conns): p for p in points}
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    cmd = " ".join(sys.argv[1:])
    lines = [
        "# Serving benchmark",
        "",
        f"Run {started:%Y-%m-%d %H:%M} to {datetime.now(UTC):%H:%M} UTC on {platform.node()}: "
        f"`nproc` = {os.cpu_count()}, Python {platform.python_version()}, {wrk_version}. "
        f"Load average (1/5/15 min) at the start, after the HTTP points and at the end: "
        f"{' → '.join(loads)}. {_machine_remark(loads)} Every point carries the load average "
        "when it ran, and points were interleaved so the ratios compare like with like.",
        "",
        "```",
        free,
        "```",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_serving.py {cmd}`",
        "",
        f"Setup: {args.firms} simulated firms, a quickly trained model; the service (`kuaxin "
        "serve`, access log off, rate limits off: they would answer most of the load with 429) on 127.0.0.1 with SQLite (WAL, a file) or PostgreSQL (same "
        "machine), 1 or 2 workers. Each score request checks the key and the consent (kept "
        "per worker for `KUAXIN_AUTH_CACHE_S`, default 1 s; a miss reads the database) and "
        "appends a hash-chained audit row (group-committed) before answering; "
        "health does none of that (the HTTP floor of the same server). "
        f"`wrk -t1 -cN -d{args.seconds:g}s`, {args.reps} interleaved repetitions per point; the "
        "tables give the median of the repetitions (rps, p50, p99).",
        "",
        "## wrk (C load generator)",
        "",
        "| server | endpoint | conns | rps (median) | p50 ms | p99 ms | CPU busy | "
        "runs: rps @ load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in points:
        runs = "; ".join(f"{r['rps']:.0f} @ {r['load'].split('/')[0]}" for r in p.runs)
        cpu = p.median("cpu") if all("cpu" in r for r in p.runs) else float("nan")
        lines.append(
            f"| {p.server} | {p.endpoint} | {p.conns} | {p.median('rps'):.0f} | "
            f"{p.median('p50'):.2f} | {p.median('p99'):.2f} | {cpu:.0%} | {runs} |"
        )
    lines += [
        "",
        "Audit after each score run (rows the run added, answers wrk counted, `kuaxin audit "
        "verify`); wrk stops with up to N requests in flight, whose rows are written although "
        "wrk does not count the answer, so rows may exceed answers by at most the connections:",
        "",
        "| server | conns | rep | answers (2xx) | non-2xx | audit rows | verify |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in points:
        if p.endpoint != "score":
            continue
        for r in p.runs:
            lines.append(
                f"| {p.server} | {p.conns} | {r['rep']} | {r['answers']} | {r['non2xx']} | "
                f"{r['audit_rows']} | {'ok' if r['verify_ok'] else 'FAILED'}: {r['verify']} |"
            )
    lines += [
        "",
        "## Python client (httpx, bounded request counts)",
        "",
        "| server | endpoint | clients | requests | p50 ms | p99 ms | req/s | errors | audit rows"
        " / answers | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for s in http["python"]:
        audit = (f"{s['audit_rows']} / {s['answers']:.0f}" if "audit_rows" in s else "—") + (
            f" ({s['firms_per_s']:.0f} firms/s)" if "firms_per_s" in s else ""
        )
        lines.append(
            f"| {s['server']} | {s['endpoint']} | {s['conns']} | {s['n']:.0f} | {s['p50']:.2f} | "
            f"{s['p99']:.2f} | {s['rps']:.0f} | {s['errors']:.0f} | {audit} | {s['load']} |"
        )
    lines += [
        "",
        "## One-row path (in process, µs per call, median of 3 interleaved repetitions)",
        "",
        "| raw `booster.predict` (1-row ndarray) | `CreditModel.score_row(dict)` | "
        "`CreditModel.score(1-row DataFrame)` |",
        "| ---: | ---: | ---: |",
        f"| {fast['raw']:.1f} | {fast['fast']:.1f} ({_ratio(fast['fast'], fast['raw'])}) | "
        f"{fast['frame']:.1f} ({_ratio(fast['frame'], fast['raw'])}) |",
        "",
        "## Start-up of one worker with the precomputed file present",
        "",
    ]
    lines += startup_table(startup)
    lines += [
        "",
        "HTTP servers' start-up (wall, s, incl. workers): "
        + ", ".join(f"{k} {v:.1f}" for k, v in http["startup"].items()),
    ]
    lines += ["", "## Ratios (done-when of issue 13)", ""]
    lines += _ratio_lines(by, fast, http["python"], startup)
    lines += _earlier_runs()
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written {RESULTS}")


def _machine_remark(loads: list[str]) -> str:
    """Say whether the run had the machine to itself, from the 1-minute load averages."""
    peak = max(float(load.split("/")[0]) for load in loads)
    if peak <= (os.cpu_count() or 1):
        return (
            f"Nothing else heavy ran (1-minute load at most {peak:.1f} on {os.cpu_count()} cores)."
        )
    return (
        f"Other jobs shared the machine (1-minute load up to {peak:.1f} on {os.cpu_count()} "
        "cores), so absolute numbers are depressed and noisy."
    )


def _earlier_runs() -> list[str]:
    """The results file as it was, headings one level down: earlier runs stay for comparison."""
    if not RESULTS.exists():
        return []
    old = RESULTS.read_text(encoding="utf-8").splitlines()
    if old and old[0] == "# Serving benchmark":
        old = old[1:]
    marker = "## Earlier runs (newest first)"
    out = ["", marker, ""]
    earlier = False  # the old file's own earlier runs are already one level down
    for line in old:
        if line == marker:
            earlier = True
            continue
        out.append("#" + line if not earlier and re.match(r"#{1,5} ", line) else line)
    return out


def _ratio_lines(
    by: dict[tuple[str, str, int], Point],
    fast: dict[str, float],
    python: list[dict[str, Any]],
    startup: list[dict[str, Any]],
) -> list[str]:
    out = []

    def rps(server: str, endpoint: str, c: int) -> float | None:
        p = by.get((server, endpoint, c))
        return p.median("rps") if p else None

    for server, target in (("sqlite-w1", 0.3), ("pg-w1", 0.2), ("sqlite-w2", 0.3), ("pg-w2", 0.2)):
        s16, h16, s1 = rps(server, "score", 16), rps(server, "health", 16), rps(server, "score", 1)
        if s16 is None or h16 is None or s1 is None:
            continue
        p99 = by[(server, "score", 16)].median("p99")
        out.append(
            f"- {server}: score/health at 16 connections {s16 / h16:.2f} (target ≥ {target}); "
            f"p99 {p99:.1f} ms (target ≤ 25); score 16 vs 1 connection "
            f"{s16:.0f} vs {s1:.0f} rps ({_ratio(s16, s1)}, target ≥ 1×)."
        )
    m16 = rps("mlflow", "invocations", 16)
    if m16:
        for server in ("sqlite-w1", "pg-w1"):
            s16 = rps(server, "score", 16)
            if s16:
                out.append(
                    f"- {server} score vs `mlflow models serve` at 16 connections: "
                    f"{_ratio(s16, m16)} (target ≥ 100×)."
                )
    p1, p2 = rps("pg-w1", "score", 16), rps("pg-w2", "score", 16)
    if p1 and p2:
        one = by[("pg-w1", "score", 16)]
        cpu = one.median("cpu") if all("cpu" in r for r in one.runs) else float("nan")
        out.append(
            f"- PostgreSQL, two workers vs one on score (16 connections): {_ratio(p2, p1)}"
            f" (target ≥ 1.6×); the machine's cores were {cpu:.0%} busy with one worker"
            " (server, PostgreSQL and wrk together)."
        )
    s1, s2 = rps("sqlite-w1", "score", 16), rps("sqlite-w2", "score", 16)
    if s1 and s2:
        out.append(f"- SQLite, two workers vs one on score (16 connections): {_ratio(s2, s1)}.")
    out.append(
        f"- One-row path vs raw booster: {_ratio(fast['fast'], fast['raw'])} (target ≤ 3×); the "
        f"DataFrame path was {_ratio(fast['frame'], fast['raw'])}."
    )
    for s in python:
        if "matches" in s["endpoint"]:
            out.append(f"- {s['server']} {s['endpoint']}: p50 {s['p50']:.0f} ms (target ≤ 300).")
    for r in startup:
        if "skipped" not in r:
            out.append(
                f"- Start-up at {r['firms']} firms with the precomputed file: {r['ready_s']:.1f} s"
                " wall until ready (target ≤ 60 s at 200,000)."
            )
        else:
            out.append(f"- {r['firms']} firms: not measured ({r['skipped']}).")
    return out


if __name__ == "__main__":
    main()
