"""A real MLflow tracking server (PostgreSQL backend, HTTP artifacts) behind every command.

The test starts ``python -m training.tracking_server`` (what ``make mlflow-server`` runs) as a
separate process on a free port with a database of its own, then trains, promotes and rolls
back through ``kuaxin`` with ``MLFLOW_TRACKING_URI=http://…`` only, and serves the champion:
the service's lookup downloads it from the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kuaxin.cli import app
from training.registry import log_training


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def tracking_server(postgres_url: str, tmp_path: Path):
    """URL of a fresh tracking server process, stopped and its database dropped afterwards."""
    import psycopg

    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    admin += "/postgres"
    database = f"kuaxin_mlflow_test_{uuid.uuid4().hex[:8]}"
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.tracking_server",
            "--admin-url",
            admin,
            "--database",
            database,
            "--artifacts",
            str(tmp_path / "artifacts"),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # MLflow imports are slow on a loaded machine
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"tracking server did not start: {(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{database}" with (force)')


def test_train_promote_rollback_and_serve_through_the_server(
    tracking_server, trained_credit, snapshot, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    runner = CliRunner()
    name = ["--name", "kuaxin-credit"]
    # two versions: one trained here, one through the CLI path's registration function
    _, v1 = log_training(trained_credit, trained_credit.metrics, "<html></html>")
    _, v2 = log_training(trained_credit, trained_credit.metrics, "<html></html>")
    assert (v1, v2) == ("1", "2")
    res = runner.invoke(app, ["promote", "--version", v1, *name])
    assert res.exit_code == 0 and "promoted version 1" in res.output, res.output
    res = runner.invoke(app, ["promote", "--version", v2, *name])
    assert res.exit_code == 0 and "promoted version 2" in res.output, res.output
    res = runner.invoke(app, ["rollback", *name])
    assert res.exit_code == 0 and "champion is version 1 again" in res.output, res.output

    # the registry really lives on the server: its REST API names the champion
    got = httpx.get(
        f"{tracking_server}/api/2.0/mlflow/registered-models/alias",
        params={"name": "kuaxin-credit", "alias": "champion"},
        timeout=10,
    )
    assert got.status_code == 200 and got.json()["model_version"]["version"] == "1"

    # the service looks the champion up through the server and scores with it
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import upgrade
    from serving.settings import Settings

    snap = tmp_path / "snapshot.parquet"
    snapshot.to_parquet(snap)
    db = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    upgrade(db)
    from serving.auth import create_key
    from serving.db import Database

    store = Database(db)
    with store.session() as s:
        admin, _ = create_key(s, "admin", "ops")  # readiness names the model source to admins
    store.dispose()
    settings = Settings(database_url=db, snapshot=snap, migrate_on_start=False)
    assert settings.mlflow_tracking_uri == tracking_server
    with TestClient(create_app(settings)) as client:
        ready = client.get("/v1/ready", headers={"X-API-Key": admin})
    assert ready.status_code == 200, ready.text
    served = ready.json()["served"]
    assert served["model_source"] == "models:/kuaxin-credit@champion"
    assert served["model_version"] == trained_credit.model.version and served["firms"] > 0
