"""Defects found by attacking the service from outside (issue 12), each on SQLite and PostgreSQL
where a database is involved: timestamps with offsets, a stuck audit lock, huge integers,
readiness and logs under write failures, body size, rate limits, metric labels, headers and
internals shown only to admins.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from serving.settings import Settings


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture()
def svc(make_service: Any, db_url: str) -> Any:
    # lock wait 1 s per statement, the group-commit writer gives a batch 3 s
    return make_service(
        db_url, db_lock_timeout_s=1.0, audit_timeout_s=3.0, rate_limits_enabled=False
    )


# --------------------------------------------------------------------------- timestamps (2)
def test_consent_expiry_with_offset_is_kept_as_an_instant(svc: Any, svc_firms: Any) -> None:
    from serving.consent import active_consent
    from serving.models import Consent

    firm, ent = svc_firms.a, svc.key("enterprise", "firm", svc_firms.a)
    svc.key("bank", "Offset Bank")  # consents go only to institutions with an active key
    expires = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
    r = svc.client.post(
        f"/v1/firms/{firm}/consents",
        json={
            "institution": "Offset Bank",
            "scopes": ["score"],
            "purpose": "loan",
            "expires_at": expires.isoformat(),
        },
        headers=h(ent),
    )
    assert r.status_code == 201, r.text
    out = datetime.fromisoformat(r.json()["expires_at"])
    assert out.tzinfo is not None and out == expires
    listed = svc.client.get(f"/v1/firms/{firm}/consents", headers=h(ent)).json()
    back = datetime.fromisoformat(listed[-1]["expires_at"])
    assert back.utcoffset() is not None and back == expires  # read back as the same instant
    for field in ("granted_at", "expires_at"):
        assert listed[-1][field].endswith(("Z", "+00:00"))
    with svc.db.session() as s:
        row = s.get(Consent, r.json()["id"])
        assert row.expires_at == expires
        # Two hours from now the consent has ended (8 hours too long before the fix).
        later = datetime.now(UTC) + timedelta(hours=2)
        assert active_consent(s, firm, "Offset Bank", "score", now=later) is None
        assert active_consent(s, firm, "Offset Bank", "score") is not None


def test_audit_and_access_log_times_carry_their_offset(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm", svc_firms.a)
    assert svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).status_code == 200
    rec = svc.client.get(f"/v1/firms/{svc_firms.a}/access-log", headers=h(ent)).json()
    assert datetime.fromisoformat(rec["records"][0]["time"]).utcoffset() == timedelta(0)


# --------------------------------------------------------------------- stuck audit lock (4)
def _hold_audit_head(url: str, ready: threading.Event, release: threading.Event) -> None:
    """Hold every audit lane's head row (PostgreSQL) or the write lock (SQLite) until
    ``release``."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("UPDATE audit_head SET last_id = last_id WHERE id = 1")
        else:
            conn.execute(sa.text("SELECT * FROM audit_head FOR UPDATE"))
        ready.set()
        release.wait(60)
        conn.rollback()
    engine.dispose()


def test_stuck_audit_lock_fails_closed_in_bounded_time(svc: Any, svc_firms: Any) -> None:
    ent, bank = svc.key("enterprise", "firm", svc_firms.a), svc.key("bank", "b")
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_audit_head, args=(svc.db.url, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        results: list[tuple[int, float, str]] = []

        def one() -> None:
            start = time.monotonic()
            r = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent))
            results.append((r.status_code, time.monotonic() - start, r.text))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        # Meanwhile endpoints that need no audit keep answering.
        start = time.monotonic()
        assert svc.client.get("/v1/products", headers=h(bank)).status_code == 200
        assert (
            svc.client.get(f"/v1/firms/{svc_firms.a}/access-log", headers=h(ent)).status_code == 200
        )
        assert svc.client.get("/v1/health").status_code == 200
        svc.client.get("/v1/ready")  # answers (503 or 200), does not hang
        assert time.monotonic() - start < 6
        for t in threads:
            t.join(30)
        assert [s for s, _, _ in results] == [503] * 4
        assert max(d for _, d, _ in results) < 10  # lock wait 1 s, batch timeout 3 s
        assert all(str(svc.loaded.scores.loc[svc_firms.a, "pd"]) not in t for *_, t in results)
    finally:
        release.set()
        holder.join()
    # Recovery without restart.
    assert svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).status_code == 200
    assert svc.verify().ok


def test_engines_carry_timeouts(db_url: str) -> None:
    from serving.db import Database

    db = Database(db_url, statement_timeout_s=3.0, lock_timeout_s=1.5)
    try:
        with db.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1500
            else:
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "3s"
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
    finally:
        db.dispose()


# ------------------------------------------------------------------------ big integers (6)
def test_huge_integers_are_422_not_500(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm", svc_firms.a)
    big = "9223372036854775808"
    for method, path in [
        ("GET", f"/v1/firms/{svc_firms.a}/access-log?before_id={big}"),
        ("DELETE", f"/v1/firms/{svc_firms.a}/consents/{big}"),
        ("DELETE", f"/v1/firms/{svc_firms.a}/consents/2147483648"),
        ("GET", f"/v1/firms/{svc_firms.a}/access-log?limit={big}"),
    ]:
        r = svc.client.request(method, path, headers=h(ent))
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["field"].split(".")[0] in ("query", "path")


def test_unknown_query_parameters_are_422(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm", svc_firms.a)
    r = svc.client.get(f"/v1/firms/{svc_firms.a}/access-log?limt=5", headers=h(ent))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limt"
    assert "limit" in r.json()["errors"][0]["expected"]
    assert (
        svc.client.get(f"/v1/firms/{svc_firms.a}/access-log?limit=5", headers=h(ent)).status_code
        == 200
    )
    assert svc.client.get("/v1/health?x=1").status_code == 422
    assert svc.client.get("/v1/products?x=1").status_code == 401  # the key is checked first


def test_a_one_value_query_parameter_given_twice_is_422(svc: Any, svc_firms: Any) -> None:
    """Read silently as its last value otherwise; a repeatable parameter may repeat."""
    ent = svc.key("enterprise", "firm", svc_firms.a)
    base = f"/v1/firms/{svc_firms.a}/access-log"
    r = svc.client.get(f"{base}?limit=5&limit=7", headers=h(ent))
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["field"] == "query.limit" and error["expected"] == "one value"
    assert "given more than once" in r.json()["detail"]
    r = svc.client.get(f"{base}?role=bank&role=insurer&limit=5", headers=h(ent))
    assert r.status_code == 200, r.text


def test_openapi_bounds_every_integer(svc: Any) -> None:
    spec = svc.client.get("/openapi.json").json()
    unbounded = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            bounded = "maximum" in node or "exclusiveMaximum" in node
            if node.get("type") == "integer" and not bounded:
                unbounded.append(where)
            for v in node.values():
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                walk(p.get("schema", {}), f"{method} {path} {p['name']}")
    for name, schema in spec["components"]["schemas"].items():
        if name.endswith("Request") or name in ("Need", "Shipment"):
            for field, prop in schema.get("properties", {}).items():
                for s in [prop, *prop.get("anyOf", [])]:
                    walk(s, f"{name}.{field}")
    assert not unbounded, unbounded


# ------------------------------------------------------- readiness and logs on failures (7)
def test_audit_write_failure_shows_in_readiness_and_log(
    svc: Any, svc_firms: Any, caplog: Any
) -> None:
    ent = svc.key("enterprise", "firm", svc_firms.a)
    assert svc.client.get("/v1/ready").json()["ready"] is True
    with svc.db.session() as s:  # the head row gone: every append fails
        s.execute(sa.text("DELETE FROM audit_head"))
    try:
        r = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent))
        assert r.status_code == 503
        assert any("audit write failed" in rec.getMessage() for rec in caplog.records)
        ready = svc.client.get("/v1/ready")
        assert ready.status_code == 503
        assert ready.json()["audit_writes"] is False and ready.json()["ready"] is False
    finally:
        with svc.db.session() as s:
            last = s.execute(sa.text("SELECT max(id) FROM audit_log")).scalar() or 0
            prev = s.execute(
                sa.text("SELECT row_hash FROM audit_log WHERE id = :i"), {"i": last}
            ).scalar()
            s.execute(
                sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :l, :h)"),
                {"l": last, "h": prev or "0" * 64},
            )
    assert svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).status_code == 200
    assert svc.client.get("/v1/ready").json()["ready"] is True  # a later write succeeded


def test_key_store_failure_is_logged_and_503(svc: Any, svc_firms: Any, caplog: Any) -> None:
    ent = svc.key("enterprise", "firm", svc_firms.a)
    with svc.db.session() as s:
        s.execute(sa.text("ALTER TABLE api_keys RENAME TO api_keys_away"))
    try:
        r = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert any("key store unavailable" in rec.getMessage() for rec in caplog.records)
    finally:
        with svc.db.session() as s:
            s.execute(sa.text("ALTER TABLE api_keys_away RENAME TO api_keys"))


def test_readiness_internals_only_for_admins(svc: Any) -> None:
    public = svc.client.get("/v1/ready").json()
    assert public["served"]["model_source"] is None and public["served"]["snapshot"] is None
    assert public["last_error"] is None
    admin = svc.client.get("/v1/ready", headers=h(svc.key("admin", "ops"))).json()
    assert admin["served"]["model_version"] == public["served"]["model_version"]
    bank = svc.client.get("/v1/ready", headers=h(svc.key("bank", "b"))).json()
    assert bank["served"]["model_source"] is None


# ------------------------------------------------------------------------------ limits (8)
def test_big_body_is_refused_before_it_is_read(svc: Any, svc_firms: Any) -> None:
    big = b'{"usc_codes": ["' + b"A" * (2 * 1024 * 1024) + b'"]}'
    r = svc.client.post(
        "/v1/scores/batch", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 413

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    r = svc.client.post("/v1/scores/batch", content=chunks(), headers=h("kx_bad"))
    assert r.status_code == 413  # a chunked body is counted as it streams, not trusted


def test_wrong_keys_get_429(make_service: Any, db_url: str, svc_firms: Any) -> None:
    svc = make_service(db_url, rate_limits_enabled=True, rate_limit_auth_failures="5/minute")
    codes = [
        svc.client.get(
            f"/v1/firms/{svc_firms.a}/score", headers=h(f"kx_{i:012d}_{'a' * 43}")
        ).status_code
        for i in range(8)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    r = svc.client.get("/v1/products", headers=h(svc.key("bank", "b")))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_per_key_and_per_client_limits(make_service: Any, db_url: str) -> None:
    svc = make_service(
        db_url, rate_limits_enabled=True, rate_limit_key="3/minute", rate_limit_client="6/minute"
    )
    a, b = svc.key("bank", "a"), svc.key("bank", "b")
    assert [svc.client.get("/v1/products", headers=h(a)).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    statuses = [svc.client.get("/v1/products", headers=h(b)).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200] and statuses[2] == 429  # the client's 6th request


def test_metric_labels_are_fixed_and_headers_safe(svc: Any) -> None:
    for method in ("FOO", "BREW", "PROPFIND"):
        svc.client.request(method, "/v1/health")
    text = svc.client.get("/metrics").text
    assert 'method="other"' in text
    assert "FOO" not in text and "BREW" not in text and "PROPFIND" not in text
    for path in ("/v1/health", "/v1/ready", "/v1/products", "/openapi.json"):
        r = svc.client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"


def test_settings_reject_bad_limits() -> None:
    with pytest.raises(ValueError):
        Settings(max_body_bytes=10)
