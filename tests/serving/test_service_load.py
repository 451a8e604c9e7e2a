"""Load with audit completeness over HTTP: concurrent clients against a real uvicorn process on
SQLite and PostgreSQL; every 200 carrying firm data is matched to exactly one audit row by its
request id, no refused request left one, and ``kuaxin audit verify`` passes afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from kx_server import ROOT, uvicorn_server

CLIENTS = int(os.environ.get("KUAXIN_LOAD_CLIENTS", "8"))
PER_CLIENT = int(os.environ.get("KUAXIN_LOAD_REQUESTS", "25"))


def _keys(url: str, firm: str) -> dict[str, str]:
    from datetime import UTC, datetime, timedelta

    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database, upgrade

    upgrade(url)
    db = Database(url)
    with db.session() as s:
        keys = {
            "enterprise": create_key(s, "enterprise", "load firm", firm)[0],
            "bank": create_key(s, "bank", "load bank")[0],
            "stranger": create_key(s, "bank", "no consent bank")[0],
        }
        grant(
            s, firm, "load bank", ["score", "explanation"], "load", datetime.now(UTC) + timedelta(1)
        )
    db.dispose()
    return keys


def test_concurrent_clients_every_answer_audited(
    db_url: str,
    svc_settings_kwargs: dict[str, Any],
    svc_firms: Any,
    tmp_path: Path,
) -> None:
    firm = svc_firms.a
    keys = _keys(db_url, firm)
    env = {
        "KUAXIN_DATABASE_URL": db_url,
        "KUAXIN_MODEL_DIR": str(svc_settings_kwargs["model_dir"]),
        "KUAXIN_SNAPSHOT": str(svc_settings_kwargs["snapshot"]),
        "KUAXIN_RATE_LIMITS_ENABLED": "false",
    }
    plan = [
        ("GET", f"/v1/firms/{firm}/score", "enterprise", None),
        ("GET", f"/v1/firms/{firm}/score", "bank", None),
        ("GET", f"/v1/firms/{firm}/explanation", "bank", None),
        ("POST", "/v1/scores/batch", "bank", {"usc_codes": [firm, svc_firms.b]}),
        ("GET", f"/v1/firms/{firm}/score", "stranger", None),  # 403: no audit row
        ("GET", "/v1/products", "bank", None),  # no firm data: no audit row
    ]
    results: list[tuple[str, int, str, bool]] = []

    def client(i: int) -> list[tuple[str, int, str, bool]]:
        out = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for j in range(PER_CLIENT):
                method, path, who, body = plan[(i + j) % len(plan)]
                rid = uuid.uuid4().hex
                r = http.request(
                    method, path, json=body, headers={"X-API-Key": keys[who], "X-Request-ID": rid}
                )
                assert r.headers["x-request-id"] == rid
                data = r.status_code == 200 and path != "/v1/products"
                if data and path == "/v1/scores/batch":
                    data = bool(r.json()["results"])
                out.append((rid, r.status_code, path, data))
        return out

    with uvicorn_server(env, tmp_path / "uvicorn.log") as url, ThreadPoolExecutor(CLIENTS) as pool:
        for part in pool.map(client, range(CLIENTS)):
            results += part
    assert len(results) == CLIENTS * PER_CLIENT
    assert {s for _, s, _, _ in results} <= {200, 403}
    engine = sa.create_engine(db_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, firm_usc FROM audit_log")).all()
    engine.dispose()
    audited: dict[str, list[str]] = {}
    for rid, usc in rows:
        audited.setdefault(rid, []).append(usc)
    for rid, status, path, data in results:
        if data:
            assert audited.get(rid) == [firm], (rid, path, audited.get(rid))
        else:
            assert rid not in audited, (rid, status, path)
    assert len(rows) == sum(1 for *_, d in results if d)
    done = subprocess.run(
        [sys.executable, "-m", "kuaxin.cli", "audit", "verify", "--database-url", db_url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0 and f"{len(rows)} rows" in done.stdout, done.stderr
