"""Database loss after start-up, against a real uvicorn process: PostgreSQL made unavailable
(``ALLOW_CONNECTIONS false`` on a database this test creates, its sessions ended) and restored;
SQLite made unwritable (the database and its WAL file immutable) and restored. While it is
gone, data endpoints answer 503 in bounded time with no data and readiness is false; liveness
answers; afterwards the service recovers without a restart and no answered access lacks its
audit row."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from kx_server import uvicorn_server

#: Bound of one refused answer (lock and connect timeouts are 1-2 s in these services).
BOUND_S = 15.0


def _prepare(url: str, firm: str) -> dict[str, str]:
    from datetime import UTC, datetime, timedelta

    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database, upgrade

    upgrade(url)
    db = Database(url)
    with db.session() as s:
        keys = {"bank": create_key(s, "bank", "loss bank")[0]}
        grant(s, firm, "loss bank", ["score"], "loss", datetime.now(UTC) + timedelta(1))
    db.dispose()
    return keys


def _env(url: str, kwargs: dict[str, Any]) -> dict[str, str]:
    return {
        "KUAXIN_DATABASE_URL": url,
        "KUAXIN_MODEL_DIR": str(kwargs["model_dir"]),
        "KUAXIN_SNAPSHOT": str(kwargs["snapshot"]),
        "KUAXIN_RATE_LIMITS_ENABLED": "false",
        "KUAXIN_DB_LOCK_TIMEOUT_S": "1",
        "KUAXIN_DB_CONNECT_TIMEOUT_S": "2",
        "KUAXIN_DB_STATEMENT_TIMEOUT_S": "3",
        "KUAXIN_READY_FAILURE_WINDOW_S": "10",
    }


def _exercise(
    url: str,
    keys: dict[str, str],
    firm: str,
    pd_text: str,
    lose: Callable[[], None],
    restore: Callable[[], None],
) -> list[str]:
    """Serve, lose the database, check the refusals, restore, check recovery; return ids of 200s."""
    answered: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as http:

        def score() -> httpx.Response:
            rid = uuid.uuid4().hex
            r = http.get(
                f"/v1/firms/{firm}/score", headers={"X-API-Key": keys["bank"], "X-Request-ID": rid}
            )
            if r.status_code == 200:
                answered.append(rid)
            return r

        assert score().status_code == 200
        lose()
        try:
            for _ in range(3):
                start = time.monotonic()
                r = score()
                assert r.status_code == 503, r.text
                assert time.monotonic() - start < BOUND_S
                assert pd_text not in r.text and r.headers["retry-after"]
            start = time.monotonic()
            ready = http.get("/v1/ready")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            assert time.monotonic() - start < BOUND_S
            assert http.get("/v1/health").status_code == 200
        finally:
            restore()
        deadline = time.monotonic() + 60
        while score().status_code != 200:
            assert time.monotonic() < deadline, "no recovery within 60 s"
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while http.get("/v1/ready").status_code != 200:
            assert time.monotonic() < deadline, "readiness did not recover"
            score()
            time.sleep(0.5)
    return answered


def _audited(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = {r for (r,) in conn.execute(sa.text("SELECT request_id FROM audit_log"))}
    engine.dispose()
    return rows


def _verify(url: str) -> bool:
    from serving.audit import verify
    from serving.db import Database

    db = Database(url)
    try:
        with db.session() as s:
            return verify(s).ok
    finally:
        db.dispose()


@contextmanager
def _fresh_postgres_database(base: str) -> Iterator[tuple[str, sa.Engine]]:
    name = f"kx_loss_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False), admin
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_postgres_lost_and_restored(
    postgres_url: str,
    svc_settings_kwargs: dict[str, Any],
    svc_firms: Any,
    svc_loaded: Any,
    tmp_path: Path,
) -> None:
    firm = svc_firms.a
    with _fresh_postgres_database(postgres_url) as (url, admin):
        name = sa.make_url(url).database
        keys = _prepare(url, firm)

        def lose() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )

        def restore() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))

        pd_text = str(float(svc_loaded.scores.loc[firm, "pd"]))
        with uvicorn_server(_env(url, svc_settings_kwargs), tmp_path / "uvicorn.log") as base:
            answered = _exercise(base, keys, firm, pd_text, lose, restore)
        assert set(answered) <= _audited(url)  # nothing answered without its record
        assert _verify(url)


def test_sqlite_made_unwritable_and_restored(
    svc_settings_kwargs: dict[str, Any], svc_firms: Any, svc_loaded: Any, tmp_path: Path
) -> None:
    firm = svc_firms.a
    path = tmp_path / "db" / "kuaxin.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    keys = _prepare(url, firm)
    probe = tmp_path / "probe"
    probe.touch()
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root on a filesystem that has it)")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    # The database and its WAL become immutable (the shared-memory index stays: it is mapped).
    files = [str(path), f"{path}-wal"]

    def lose() -> None:
        subprocess.run(["chattr", "+i", *files], check=True)

    def restore() -> None:
        subprocess.run(["chattr", "-i", *files], check=True)

    pd_text = str(float(svc_loaded.scores.loc[firm, "pd"]))
    try:
        with uvicorn_server(_env(url, svc_settings_kwargs), tmp_path / "uvicorn.log") as base:
            answered = _exercise(base, keys, firm, pd_text, lose, restore)
    finally:
        subprocess.run(["chattr", "-i", *files], capture_output=True)
    assert set(answered) <= _audited(url)
    assert _verify(url)
