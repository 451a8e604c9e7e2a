"""Errors, readiness, audit failures, OpenAPI and metrics of the scoring service."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

PROBLEM = "application/problem+json"


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture()
def svc(make_service: Any, db_url: str) -> Any:
    return make_service(db_url)


def test_missing_bad_and_revoked_keys_are_401(svc: Any, svc_firms: Any) -> None:
    from serving.auth import revoke_key
    from serving.models import ApiKey

    path = f"/v1/firms/{svc_firms.a}/score"
    for hdrs in ({}, h("nonsense"), h("kx_000000000000_" + "a" * 43)):
        r = svc.client.get(path, headers=hdrs)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
        assert r.headers["www-authenticate"].startswith("ApiKey")
    key = svc.key("enterprise", "firm a", svc_firms.a)
    assert svc.client.get(path, headers=h(key)).status_code == 200
    with svc.db.session() as s:
        revoke_key(s, s.scalar(sa.select(ApiKey.id).where(ApiKey.org == "firm a")))
    assert svc.client.get(path, headers=h(key)).status_code == 401
    # 401 comes before anything about the firm (no probing without a key).
    assert svc.client.get("/v1/firms/123/score").status_code == 401


def test_keys_are_stored_hashed(svc: Any) -> None:
    key = svc.key("bank", "hash bank")
    with svc.db.engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    assert rows and not any(key in cell or key.split("_", 2)[2] in cell for r in rows for cell in r)


@pytest.mark.parametrize(
    ("code", "check"),
    [
        ("123", "length"),
        ("91440300MA5G2X7K3" + "I", "charset"),
        ("91440300MA5G2X7K3" + "0", "check_char"),
    ],
)
def test_invalid_uscc_is_422_naming_the_check(svc: Any, code: str, check: str) -> None:
    key = svc.key("bank", "b")
    for method, path, body in [
        ("GET", f"/v1/firms/{code}/score", None),
        ("GET", f"/v1/firms/{code}/explanation", None),
        ("POST", f"/v1/firms/{code}/what-if", {"changes": {"refund_rate_6m": 0.0}}),
        ("POST", "/v1/scores/batch", {"usc_codes": [code]}),
    ]:
        r = svc.client.request(method, path, json=body, headers=h(key))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        err = r.json()["errors"][0]
        assert check in err["message"]
        assert err["field"] in ("path.usc_code", "body.usc_codes.0")


def test_org_check_char_failure_is_named(svc: Any, svc_firms: Any) -> None:
    from features.uscc import check_char

    # Change the organisation check character and fix the outer one: only the inner check fails.
    a = svc_firms.a
    inner = "1" if a[16] != "1" else "2"
    code = a[:16] + inner
    code += check_char(code)
    r = svc.client.get(f"/v1/firms/{code}/score", headers=h(svc.key("bank", "b")))
    assert r.status_code == 422 and "org_check_char" in r.json()["detail"]


def test_unknown_firm_is_404(svc: Any, svc_firms: Any) -> None:
    u = svc_firms.unknown
    ent = svc.key("enterprise", "unknown firm", u)
    bank = svc.key("bank", "bank u")
    svc.consent(u, "bank u")
    for key in (ent, bank):
        r = svc.client.get(f"/v1/firms/{u}/score", headers=h(key))
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    # Without consent the bank learns nothing about existence: 403, not 404.
    assert (
        svc.client.get(f"/v1/firms/{u}/score", headers=h(svc.key("bank", "x"))).status_code == 403
    )
    batch = svc.client.post("/v1/scores/batch", json={"usc_codes": [u]}, headers=h(bank)).json()
    assert batch["errors"] == [{"usc_code": u, "status": 404, "detail": "not in the snapshot"}]
    assert svc.audit_count() == 0


def test_no_model_is_503_and_not_ready(make_service: Any, db_url: str, svc_firms: Any) -> None:
    svc = make_service(db_url, loaded=None)
    ent = svc.key("enterprise", "firm a", svc_firms.a)
    a = svc_firms.a
    for method, path, body in [
        ("GET", f"/v1/firms/{a}/score", None),
        ("GET", f"/v1/firms/{a}/explanation", None),
        ("POST", f"/v1/firms/{a}/what-if", {"changes": {"refund_rate_6m": 0.0}}),
        ("POST", f"/v1/firms/{a}/recourse", {"target_grade": "BBB"}),
        ("POST", "/v1/scores/batch", {"usc_codes": [a]}),
    ]:
        r = svc.client.request(method, path, json=body, headers=h(ent))
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == PROBLEM and "no model" in r.json()["detail"]
    ready = svc.client.get("/v1/ready")
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert svc.client.get("/v1/health").json() == {"status": "ok"}
    assert svc.audit_count() == 0


def test_ready_when_loaded(svc: Any) -> None:
    r = svc.client.get("/v1/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] and body["database"]
    assert body["served"]["model_version"] == svc.loaded.model_version
    assert body["served"]["firms"] == len(svc.loaded.position)


def test_audit_table_unwritable_gives_503_and_no_data(svc: Any, svc_firms: Any) -> None:
    a = svc_firms.a
    ent = svc.key("enterprise", "firm a", a)
    with svc.db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_away"))
    secret = f"{float(svc.loaded.scores.loc[a, 'pd'])}"
    for method, path, body in [
        ("GET", f"/v1/firms/{a}/score", None),
        ("GET", f"/v1/firms/{a}/explanation", None),
        ("POST", f"/v1/firms/{a}/what-if", {"changes": {"refund_rate_6m": 0.0}}),
        ("POST", "/v1/scores/batch", {"usc_codes": [a]}),
    ]:
        r = svc.client.request(method, path, json=body, headers=h(ent))
        assert r.status_code == 503, r.text
        assert r.json()["type"].endswith("audit-unavailable")
        assert secret not in r.text and "grade" not in r.text
    metrics = svc.client.get("/metrics").text
    assert "kuaxin_audit_failures_total 4.0" in metrics
    # Recovery: once the table is back, data flows and the chain is whole.
    with svc.db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log_away RENAME TO audit_log"))
    assert svc.client.get(f"/v1/firms/{a}/score", headers=h(ent)).status_code == 200
    assert svc.verify().ok and svc.verify().rows == 1


def test_unknown_fields_are_rejected_naming_the_field(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm a", svc_firms.a)
    r = svc.client.post(
        f"/v1/firms/{svc_firms.a}/recourse",
        json={"target_grade": "BBB", "hurry": True},
        headers=h(ent),
    )
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "body.hurry" and err["expected"] == "no such field"
    r = svc.client.post(
        f"/v1/firms/{svc_firms.a}/recourse", json={"target_grade": "ZZ"}, headers=h(ent)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.target_grade"
    assert "BBB" in r.json()["errors"][0]["expected"]


def test_batch_limits_and_duplicates(make_service: Any, db_url: str, svc_firms: Any) -> None:
    svc = make_service(db_url, batch_max=3)
    bank = svc.key("bank", "batch bank")
    svc.consent(svc_firms.a, "batch bank")
    r = svc.client.post("/v1/scores/batch", json={"usc_codes": [svc_firms.a] * 4}, headers=h(bank))
    assert r.status_code == 422 and r.json()["errors"][0]["expected"] == "at most 3"
    r = svc.client.post("/v1/scores/batch", json={"usc_codes": []}, headers=h(bank))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.usc_codes"
    r = svc.client.post(
        "/v1/scores/batch",
        json={"usc_codes": [svc_firms.a, svc_firms.a, svc_firms.b]},
        headers=h(bank),
    )
    body = r.json()
    assert [x["usc_code"] for x in body["results"]] == [svc_firms.a]
    assert [e["usc_code"] for e in body["errors"]] == [svc_firms.b]
    assert svc.audit_count() == 1


def test_batch_matches_single_scores(svc: Any, svc_firms: Any) -> None:
    bank = svc.key("bank", "pf bank")
    firms = sorted(svc.loaded.position)[:40]
    from features.uscc import validate

    firms = [f for f in firms if validate(f).valid]
    for f in firms:
        svc.consent(f, "pf bank", ("score",))
    batch = svc.client.post("/v1/scores/batch", json={"usc_codes": firms}, headers=h(bank)).json()
    assert len(batch["results"]) == len(firms)
    for item in batch["results"][:5]:
        single = svc.client.get(f"/v1/firms/{item['usc_code']}/score", headers=h(bank)).json()
        assert single == item
    assert svc.audit_count() == len(firms) + 5
    assert svc.verify().ok


def test_request_id_is_echoed_and_audited(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm a", svc_firms.a)
    r = svc.client.get(
        f"/v1/firms/{svc_firms.a}/score", headers={**h(ent), "X-Request-ID": "trace-123"}
    )
    assert r.headers["x-request-id"] == "trace-123"
    log = svc.client.get(f"/v1/firms/{svc_firms.a}/access-log", headers=h(ent)).json()
    assert log["records"][0]["request_id"] == "trace-123"
    r = svc.client.get("/v1/health", headers={"X-Request-ID": "bad id with spaces"})
    assert (
        r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32
    )


def test_openapi_documents_endpoints_with_examples(svc: Any) -> None:
    spec = svc.client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in [
        "/v1/firms/{usc_code}/score",
        "/v1/scores/batch",
        "/v1/firms/{usc_code}/explanation",
        "/v1/firms/{usc_code}/what-if",
        "/v1/firms/{usc_code}/recourse",
        "/v1/firms/{usc_code}/consents",
        "/v1/firms/{usc_code}/access-log",
        "/v1/admin/reload",
        "/v1/health",
        "/v1/ready",
    ]:
        assert p in paths, p
    score = paths["/v1/firms/{usc_code}/score"]["get"]
    assert {"401", "403", "404", "422", "503"} <= set(score["responses"])
    assert score["description"] or score.get("summary")
    schemas = spec["components"]["schemas"]
    assert schemas["WhatIfRequest"]["additionalProperties"] is False
    assert "examples" in schemas["WhatIfRequest"]["properties"]["changes"]
    assert svc.client.get("/docs").status_code == 200


def test_metrics_count_requests_by_route(svc: Any, svc_firms: Any) -> None:
    ent = svc.key("enterprise", "firm a", svc_firms.a)
    for _ in range(3):
        svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent))
    text = svc.client.get("/metrics").text
    assert (
        'kuaxin_http_requests_total{method="GET",route="/v1/firms/{usc_code}/score",status="200"} 3.0'
        in text
    )
    assert "kuaxin_ready 1.0" in text


def test_optional_routers_hook() -> None:
    from serving.app import _optional_router

    assert _optional_router("no_such_domain_router") is None
