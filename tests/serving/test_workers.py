"""``kuaxin serve --workers N``: TCP_NODELAY on every connection, one precomputed file, one
audit chain across the worker processes."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from serving.workers import NoDelayH11Protocol


def _accepted_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    # Protocol number 0, as uvicorn opens the listening socket it shares with several workers.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def _nodelay_after(protocol_class: Any) -> int:
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    config = uvicorn.Config(app, log_level="warning")
    config.load()
    listener, client, server = _accepted_pair()

    async def attach() -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol_class(config=config, server_state=ServerState(), app_state={}),
            server,
        )
        value = transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        transport.close()
        return int(value)

    try:
        return asyncio.run(attach())
    finally:
        client.close()
        listener.close()


def test_every_worker_connection_gets_tcp_nodelay() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    # Stock uvicorn leaves Nagle on for such a socket; the service's protocol switches it off.
    assert _nodelay_after(H11Protocol) == 0
    assert _nodelay_after(NoDelayH11Protocol) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _grant(url: str, firms: list[str]) -> str:
    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database

    db = Database(url)
    with db.session() as s:
        key, _ = create_key(s, "bank", "Worker Test Bank")
        for firm in firms:
            grant(
                s, firm, "Worker Test Bank", ["score"], "review", datetime.now(UTC) + timedelta(1)
            )
    db.dispose()
    return key


def test_two_workers_share_one_precomputed_file_and_one_audit_chain(
    db_url: str, trained_model_dir: Path, svc_snapshot_path: Path, svc_firms: Any, tmp_path: Path
) -> None:
    from serving.audit import verify
    from serving.db import Database, upgrade

    upgrade(db_url)
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "KUAXIN_PRECOMPUTE_DIR": str(tmp_path / "pre"),
    }
    cmd = [
        *(sys.executable, "-m", "kuaxin.cli", "serve"),
        *("--port", str(port), "--workers", "2", "--database-url", db_url),
        *("--snapshot", str(svc_snapshot_path), "--model-dir", str(trained_model_dir)),
        "--no-access-log",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        ready = 0
        while time.monotonic() < deadline and proc.poll() is None:
            ready = len(re.findall(r"serving model .* \(worker \d+, scores from ", log.read_text()))
            if ready == 2:
                break
            time.sleep(0.5)
        assert ready == 2, log.read_text()[-3000:]
        firms = [svc_firms.a, svc_firms.b]
        key = _grant(db_url, firms)
        ok, lock = [0], threading.Lock()

        def client(t: int) -> None:
            with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as c:
                for i in range(15):
                    r = c.get(f"/v1/firms/{firms[(t + i) % 2]}/score")
                    assert r.status_code == 200, r.text
                    with lock:
                        ok[0] += 1

        threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert ok[0] == 6 * 15
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    text = log.read_text()
    pids = set(re.findall(r"\(worker (\d+), scores from ", text))
    assert len(pids) == 2, text[-3000:]  # two processes, both mapped the parent's file
    assert len(list((tmp_path / "pre").iterdir())) == 1
    db = Database(db_url)
    with db.sessions() as s:
        result = verify(s)
        rows = s.scalar(sa.text("SELECT count(*) FROM audit_log"))
    db.dispose()
    assert result.ok, result
    assert rows == ok[0]  # one audit row per answered request, across both workers


@pytest.mark.parametrize("workers", ["0", "x"])
def test_serve_refuses_a_bad_worker_count(workers: str) -> None:
    from typer.testing import CliRunner

    from kuaxin.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", workers, "--snapshot", "x.parquet"])
    assert result.exit_code != 0
    assert "workers" in result.output


def test_the_serve_extra_brings_the_fast_parser_and_loop() -> None:
    """httptools and uvloop (serve extra) are installed and the served protocol is httptools'."""
    import sys

    import httptools

    from serving.workers import HTTP_PROTOCOL

    assert httptools.__version__
    assert HTTP_PROTOCOL.__name__ == "NoDelayHttpToolsProtocol"
    if sys.platform != "win32":
        import uvloop

        assert uvloop.__version__
