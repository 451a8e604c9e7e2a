"""The access matrix: every endpoint of the access table (serving/access.py) x role x consent
state, on SQLite and PostgreSQL; and every route of the app has an entry in that table.

Consent states of a bank or insurer towards firm A: none, active, expired, revoked, and a
consent for another firm only. Enterprises: own firm A, or a key of firm B. Regulators and
admins never see firm data. Nothing leaks in a refusal, and every answer with firm data left
exactly one audit row per firm.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from serving.access import OWN, SCOPES, TABLE, rule_for

STATES = ["none", "active", "expired", "revoked", "other_firm"]
#: Scopes of the matrix's consents: all of them, so "active" opens every consent endpoint.
ALL_SCOPES = tuple(SCOPES)

#: A valid request body per endpoint that needs one (an entry the app adds without a body
#: here fails test_every_route_is_in_the_table_and_the_matrix).
BODIES: dict[str, Any] = {
    "POST /v1/firms/{usc_code}/what-if": {"changes": {"refund_rate_6m": 0.01}},
    "POST /v1/firms/{usc_code}/recourse": "recourse",
    "POST /v1/scores/batch": "batch",
    "POST /v1/firms/{usc_code}/consents": {
        "institution": "New Bank",
        "scopes": ["score"],
        "purpose": "loan",
        "expires_at": "2099-01-01T00:00:00Z",
    },
    "POST /v1/firms/{usc_code}/matches": {
        "amount_cny": 500000,
        "purpose": "working_capital",
        "tenor_months": 6,
        "insurance_wanted": True,
        "recourse": False,
    },
    "POST /v1/firms/{usc_code}/loan-price": {"tenor_months": 12},
    "POST /v1/firms/{usc_code}/quote": {
        "product_id": "sinosure_steci_comprehensive",
        "buyer_country": "USA",
        "buyer_grade": "B",
        "amount_usd": 50000,
        "terms": "O/A",
        "credit_days": 90,
    },
    "POST /v1/admin/reload": "skip",  # reloads every firm: covered by test_service_reload
    "POST /portal/": None,
}
#: Path parameters other than the firm.
PATH_VALUES = {"consent_id": "999999"}


def _callers() -> list[tuple[str, str]]:
    out = [(role, state) for role in ("bank", "insurer") for state in STATES]
    out += [("enterprise", "own"), ("enterprise", "other_firm"), ("regulator", "-"), ("admin", "-")]
    return out


def _keyed() -> list[Any]:
    return [e for e in TABLE if not e.public and BODIES.get(e.key) != "skip"]


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
        Settings(database_url=module_db_url, load_on_start=False, rate_limits_enabled=False),
        ServingState(svc_loaded),
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
                svc.consent(firm, org, ALL_SCOPES, "active" if state == "other_firm" else state)
        yield svc, keys
        svc.db.dispose()


def _body(key: str, firm: str, loaded: Any) -> Any:
    body = BODIES.get(key)
    if body == "recourse":
        # The firm's own grade: the goal is met at once, so the matrix tests access, not search.
        return {"target_grade": str(loaded.scores.loc[firm, "grade"])}
    if body == "batch":
        return {"usc_codes": [firm]}
    return body


def _path(entry: Any, firm: str) -> str:
    path = entry.path.replace("{usc_code}", firm)
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    return path


def _secrets(loaded: Any, firm: str) -> list[str]:
    """Strings that would betray the firm's data if they appeared in a refusal."""
    s = loaded.scores.loc[firm]
    return [
        json.dumps(float(s["pd"])),
        json.dumps(float(s["score"])),
        str(loaded.snapshot.loc[firm, "name"]),
    ]


def _granted(entry: Any, role: str, state: str) -> bool:
    """What the table says: may this caller (role, consent state) use the endpoint on firm A?"""
    grant = entry.grant(role)
    if grant is None:
        return False
    if grant in SCOPES:
        return state == "active"  # the matrix's consents carry every scope
    if grant == OWN:
        return state == "own"
    return True


def test_every_route_is_in_the_table_and_the_matrix(world: Any) -> None:
    svc, _ = world
    from serving.app import api_routes

    found = api_routes(svc.app)
    assert len(found) >= 20, found  # the walk sees the included routers
    missing, no_body, routes = [], [], set()
    for method, path in found:
        routes.add(f"{method} {path}")
        entry = rule_for(method, path)
        if entry is None:
            missing.append(f"{method} {path}")
        elif method in ("POST", "PUT", "PATCH") and entry.key not in BODIES:
            no_body.append(entry.key)
    assert not missing, f"routes without an entry in serving/access.py TABLE: {missing}"
    assert not no_body, f"add a request body for the access matrix: {no_body}"
    stale = [e.key for e in TABLE if not e.path.endswith("*") and e.key not in routes]
    assert not stale, f"table entries without a route: {stale}"


@pytest.mark.parametrize(("role", "state"), _callers())
@pytest.mark.parametrize("entry", _keyed(), ids=lambda e: e.key)
def test_access_matrix(world: Any, svc_firms: Any, entry: Any, role: str, state: str) -> None:
    svc, keys = world
    firm = svc_firms.a
    before = svc.audit_count()
    r = svc.client.request(
        entry.method,
        _path(entry, firm),
        json=_body(entry.key, firm, svc.loaded),
        headers={"X-API-Key": keys[(role, state)]},
    )
    allowed = _granted(entry, role, state)
    if entry.key == "POST /v1/scores/batch" and entry.grant(role) is not None:
        # A batch answers 200 and lists the firms the caller may not see under errors.
        assert r.status_code == 200, r.text
        body = r.json()
        if allowed:
            assert [x["usc_code"] for x in body["results"]] == [firm] and body["errors"] == []
            assert svc.audit_count() == before + 1
        else:
            assert body["results"] == [] and body["errors"][0]["status"] == 403
            assert all(sec not in r.text for sec in _secrets(svc.loaded, firm))
            assert svc.audit_count() == before
        return
    if not allowed:
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert all(sec not in r.text for sec in _secrets(svc.loaded, firm))
        assert svc.audit_count() == before
        return
    assert r.status_code not in (401, 403), r.text
    assert r.status_code < 500, r.text
    if entry.audited:
        assert r.status_code == 200, r.text
        assert r.json()["usc_code"] == firm
        assert svc.audit_count() == before + 1
    else:
        assert svc.audit_count() == before


@pytest.mark.parametrize("entry", [e for e in TABLE if e.public], ids=lambda e: e.key)
def test_public_endpoints_need_no_key(world: Any, entry: Any) -> None:
    svc, _ = world
    path = entry.path.replace("*", "grade")
    r = svc.client.request(entry.method, path, follow_redirects=False)
    assert r.status_code not in (401, 403) and r.status_code < 500, r.text


def test_the_table_decides_a_route_without_an_entry_is_refused(world: Any) -> None:
    """A route the table does not list answers 403 to everyone (fail closed)."""
    svc, keys = world

    def secret() -> dict[str, str]:
        return {"leak": "yes"}

    svc.app.add_api_route("/v1/not-in-the-table", secret, methods=["GET"])
    try:
        r = svc.client.get("/v1/not-in-the-table", headers={"X-API-Key": keys[("admin", "-")]})
        assert r.status_code == 403 and "leak" not in r.text
    finally:
        svc.app.router.routes[:] = [
            x for x in svc.app.router.routes if getattr(x, "path", "") != "/v1/not-in-the-table"
        ]


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


def _firm_values(payload: Any) -> list[Any]:
    """Every ``actual`` of a trace row whose source is the firm, anywhere in an answer."""
    out: list[Any] = []
    if isinstance(payload, dict):
        if payload.get("source") == "firm" and "actual" in payload:
            out.append(payload["actual"])
        for v in payload.values():
            out += _firm_values(v)
    elif isinstance(payload, list):
        for v in payload:
            out += _firm_values(v)
    return out


def test_score_scope_hides_feature_values_and_recourse_in_matches(
    world: Any, svc_firms: Any
) -> None:
    svc, _ = world
    firm = svc_firms.a
    need = {**BODIES["POST /v1/firms/{usc_code}/matches"], "recourse": True}
    narrow = svc.key("bank", "score and quote bank")
    svc.consent(firm, "score and quote bank", ("score", "quote"))
    wide = svc.key("bank", "explaining bank")
    svc.consent(firm, "explaining bank", ("score", "explanation"))
    r = svc.client.post(f"/v1/firms/{firm}/matches", json=need, headers={"X-API-Key": narrow})
    assert r.status_code == 200, r.text
    body = r.json()
    assert _firm_values(body) and all(v is None for v in _firm_values(body))
    assert all(p["recourse"] is None for p in body["financing"] + body["insurance"])
    assert body["grade"] and body["financing"][0]["trace"]  # the score and the rules remain
    full = svc.client.post(f"/v1/firms/{firm}/matches", json=need, headers={"X-API-Key": wide})
    assert full.status_code == 200
    assert any(v is not None for v in _firm_values(full.json()))
    assert any(p["recourse"] is not None for p in full.json()["financing"])


def test_consents_open_only_their_endpoints(world: Any, svc_firms: Any) -> None:
    svc, _ = world
    firm = svc_firms.a
    insurer = svc.key("insurer", "score-only insurer")
    svc.consent(firm, "score-only insurer", ("score",))
    bank = svc.key("bank", "quote bank")
    svc.consent(firm, "quote bank", ("score", "explanation", "quote"))
    quoting = svc.key("insurer", "quote-only insurer")
    svc.consent(firm, "quote-only insurer", ("quote",))
    for key, path, expected in [
        (insurer, "score", 200),
        (insurer, "matches", 403),
        (insurer, "loan-price", 403),
        (insurer, "quote", 403),
        (bank, "quote", 403),
        (bank, "matches", 200),
        (quoting, "quote", 200),
        (quoting, "score", 403),
    ]:
        method = "GET" if path == "score" else "POST"
        body = BODIES.get(f"POST /v1/firms/{{usc_code}}/{path}")
        r = svc.client.request(
            method, f"/v1/firms/{firm}/{path}", json=body, headers={"X-API-Key": key}
        )
        assert r.status_code == expected, (path, r.text)
        if expected == 403:
            assert all(sec not in r.text for sec in _secrets(svc.loaded, firm))
    # The quote scope prices the shipment; the firm's raw values need the explanation scope.
    q = svc.client.post(
        f"/v1/firms/{firm}/quote",
        json=BODIES["POST /v1/firms/{usc_code}/quote"],
        headers={"X-API-Key": quoting},
    ).json()
    assert q["exporter_grade"] and all(v is None for v in _firm_values(q))


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
