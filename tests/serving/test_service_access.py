"""The access matrix: every firm-data endpoint x role x consent state, on SQLite and PostgreSQL.

Consent states of a bank or insurer towards firm A: none, active, expired, revoked, and a
consent for another firm only. Enterprises: own firm A, or a key of firm B. Regulators and
admins never see firm data. Nothing leaks in a refusal, and every answer with firm data left
exactly one audit row per firm.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

STATES = ["none", "active", "expired", "revoked", "other_firm"]

# (name, method, path, body, scope)
DATA_ENDPOINTS = [
    ("score", "GET", "/v1/firms/{firm}/score", None),
    ("explanation", "GET", "/v1/firms/{firm}/explanation", None),
    ("what_if", "POST", "/v1/firms/{firm}/what-if", "what_if"),
    ("recourse", "POST", "/v1/firms/{firm}/recourse", "recourse"),
    ("batch", "POST", "/v1/scores/batch", "batch"),
]
OWNER_ENDPOINTS = [
    ("consents", "GET", "/v1/firms/{firm}/consents", None),
    ("grant", "POST", "/v1/firms/{firm}/consents", "grant"),
    ("access_log", "GET", "/v1/firms/{firm}/access-log", None),
]


def _callers() -> list[tuple[str, str]]:
    out = [(role, state) for role in ("bank", "insurer") for state in STATES]
    out += [("enterprise", "own"), ("enterprise", "other_firm"), ("regulator", "-"), ("admin", "-")]
    return out


@pytest.fixture(scope="module")
def world(module_db_url: str, svc_loaded: Any, svc_firms: Any) -> Any:
    """One service with a key for every (role, consent state) and the matching consents."""
    from conftest import Service
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import Database
    from serving.settings import Settings
    from serving.state import ServingState

    app = create_app(
        Settings(database_url=module_db_url, load_on_start=False), ServingState(svc_loaded)
    )
    with TestClient(app) as client:
        svc = Service(client=client, app=app, db=Database(module_db_url), loaded=svc_loaded)
        a, b = svc_firms.a, svc_firms.b
        keys: dict[tuple[str, str], str] = {}
        svc.key("bank", "New Bank")  # the institution the grant calls consent to
        for role, state in _callers():
            org = f"{role} {state}"
            if role == "enterprise":
                keys[(role, state)] = svc.key(role, org, a if state == "own" else b)
                continue
            keys[(role, state)] = svc.key(role, org)
            if role in ("bank", "insurer") and state != "none":
                firm = b if state == "other_firm" else a
                svc.consent(
                    firm,
                    org,
                    ("score", "explanation"),
                    "active" if state == "other_firm" else state,
                )
        yield svc, keys
        svc.db.dispose()


def _allowed_data(role: str, state: str) -> bool:
    return (role in ("bank", "insurer") and state == "active") or (role, state) == (
        "enterprise",
        "own",
    )


def _body(kind: str | None, firm: str, loaded: Any) -> Any:
    if kind == "what_if":
        return {"changes": {"refund_rate_6m": 0.01}}
    if kind == "recourse":
        # The firm's own grade: the goal is met at once, so the matrix tests access, not search.
        return {"target_grade": str(loaded.scores.loc[firm, "grade"])}
    if kind == "batch":
        return {"usc_codes": [firm]}
    if kind == "grant":
        return {
            "institution": "New Bank",
            "scopes": ["score"],
            "purpose": "loan",
            "expires_at": "2099-01-01T00:00:00Z",
        }
    return None


def _secrets(loaded: Any, firm: str) -> list[str]:
    """Strings that would betray the firm's data if they appeared in a refusal."""
    s = loaded.scores.loc[firm]
    return [
        json.dumps(float(s["pd"])),
        json.dumps(float(s["score"])),
        str(loaded.snapshot.loc[firm, "name"]),
    ]


@pytest.mark.parametrize(("role", "state"), _callers())
@pytest.mark.parametrize("endpoint", DATA_ENDPOINTS + OWNER_ENDPOINTS, ids=lambda e: e[0])
def test_access_matrix(world: Any, svc_firms: Any, endpoint: tuple, role: str, state: str) -> None:
    svc, keys = world
    name, method, path, body_kind = endpoint
    firm = svc_firms.a
    before = svc.audit_count()
    r = svc.client.request(
        method,
        path.format(firm=firm),
        json=_body(body_kind, firm, svc.loaded),
        headers={"X-API-Key": keys[(role, state)]},
    )
    if (name, method) in {(e[0], e[1]) for e in OWNER_ENDPOINTS}:
        allowed = (role, state) == ("enterprise", "own") or role == "admin"
        expected = (201 if name == "grant" else 200) if allowed else 403
        assert r.status_code == expected, r.text
        assert svc.audit_count() == before
        return
    if name == "batch":
        if role in ("regulator", "admin"):
            assert r.status_code == 403, r.text
            assert svc.audit_count() == before
            return
        assert r.status_code == 200, r.text
        body = r.json()
        if _allowed_data(role, state):
            assert [x["usc_code"] for x in body["results"]] == [firm] and body["errors"] == []
            assert svc.audit_count() == before + 1
        else:
            assert body["results"] == [] and body["errors"][0]["status"] == 403
            assert all(sec not in r.text for sec in _secrets(svc.loaded, firm))
            assert svc.audit_count() == before
        return
    if _allowed_data(role, state):
        assert r.status_code == 200, r.text
        assert r.json()["usc_code"] == firm
        assert svc.audit_count() == before + 1
    else:
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert all(sec not in r.text for sec in _secrets(svc.loaded, firm))
        assert svc.audit_count() == before


def test_scope_is_enforced(world: Any, svc_firms: Any) -> None:
    svc, _ = world
    key = svc.key("bank", "score-only bank")
    svc.consent(svc_firms.a, "score-only bank", ("score",))
    h = {"X-API-Key": key}
    assert svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h).status_code == 200
    for method, path, body in [
        ("GET", "explanation", None),
        ("POST", "what-if", {"changes": {"refund_rate_6m": 0.01}}),
        ("POST", "recourse", {"target_grade": "C"}),
    ]:
        r = svc.client.request(method, f"/v1/firms/{svc_firms.a}/{path}", json=body, headers=h)
        assert r.status_code == 403 and "explanation" in r.json()["detail"]


def test_revocation_takes_effect_at_once(world: Any, svc_firms: Any) -> None:
    svc, _ = world
    firm = svc_firms.a
    bank = svc.key("bank", "revoking bank")
    ent = svc.key("enterprise", "firm a", firm)
    grant = svc.client.post(
        f"/v1/firms/{firm}/consents",
        json={
            "institution": "revoking bank",
            "scopes": ["score"],
            "purpose": "loan",
            "expires_at": "2099-01-01T00:00:00+08:00",
        },
        headers={"X-API-Key": ent},
    )
    assert grant.status_code == 201 and grant.json()["state"] == "active"
    assert svc.client.get(f"/v1/firms/{firm}/score", headers={"X-API-Key": bank}).status_code == 200
    cid = grant.json()["id"]
    r = svc.client.delete(f"/v1/firms/{firm}/consents/{cid}", headers={"X-API-Key": ent})
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert svc.client.get(f"/v1/firms/{firm}/score", headers={"X-API-Key": bank}).status_code == 403
    # Another firm cannot revoke (or see) this firm's consents.
    other = svc.key("enterprise", "firm b", svc_firms.b)
    assert (
        svc.client.delete(
            f"/v1/firms/{firm}/consents/{cid}", headers={"X-API-Key": other}
        ).status_code
        == 403
    )
    # The institution sees what it was granted.
    mine = svc.client.get("/v1/consents", headers={"X-API-Key": bank}).json()
    assert [c["id"] for c in mine] == [cid] and mine[0]["state"] == "revoked"


def test_enterprise_sees_who_accessed_its_record(world: Any, svc_firms: Any) -> None:
    svc, keys = world
    firm = svc_firms.a
    svc.client.get(
        f"/v1/firms/{firm}/score", headers={"X-API-Key": keys[("bank", "active")]}, params={}
    )
    log = svc.client.get(
        f"/v1/firms/{firm}/access-log", headers={"X-API-Key": keys[("enterprise", "own")]}
    )
    assert log.status_code == 200
    rec = log.json()["records"][0]
    assert rec["institution"] == "bank active" and rec["role"] == "bank"
    assert rec["endpoint"] == "GET /v1/firms/{usc_code}/score"
    assert rec["purpose"] == "credit review" and rec["model_version"] == svc.loaded.model_version
    # Paging: records are newest first and before_id continues the list.
    page = svc.client.get(
        f"/v1/firms/{firm}/access-log",
        params={"limit": 1},
        headers={"X-API-Key": keys[("enterprise", "own")]},
    ).json()
    nxt = svc.client.get(
        f"/v1/firms/{firm}/access-log",
        params={"limit": 1, "before_id": page["next_before_id"]},
        headers={"X-API-Key": keys[("enterprise", "own")]},
    ).json()
    assert nxt["records"][0]["id"] < page["records"][0]["id"]


def test_chain_verifies_after_the_matrix(world: Any) -> None:
    svc, keys = world
    result = svc.verify()
    assert result.ok and result.rows > 0
    r = svc.client.get("/v1/admin/audit/verify", headers={"X-API-Key": keys[("admin", "-")]})
    assert r.json() == {"ok": True, "rows": result.rows, "first_bad_id": None, "reason": None}
