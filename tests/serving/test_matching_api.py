# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""HTTP: products, matching, loan price, quotes, countries and regulator endpoints with access rules."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from kx_service import ServedWorld, served_world  # noqa: F401  (fixture)

NEED = {
    "amount_cny": 500000,
    "purpose": "working_capital",
    "tenor_months": 6,
    "insurance_wanted": True,
}
QUOTE = {
    "buyer_country": "USA",
    "buyer_grade": "B",
    "terms": "O/A",
    "credit_days": 60,
    "amount_usd": 50000,
}


@pytest.fixture(scope="module")
def client(served_world: ServedWorld) -> Any:
    with TestClient(served_world.app()) as c:
        yield c


def test_products_catalog_for_any_key(client: TestClient, served_world: ServedWorld) -> None:
    r = client.get("/v1/products", headers=served_world.headers("regulator"))
    assert r.status_code == 200
    body = r.json()
    assert len(body["products"]) >= 12
    assert all(p["rules"] and "text" in p["rules"][0] for p in body["products"])
    assert client.get("/v1/products").status_code == 401


def test_bank_matches_with_consent_and_audit(client: TestClient, served_world: ServedWorld) -> None:
    firm = served_world.firm
    need = {**NEED, "recourse": False}  # a bank's quick ranking; recourse is tested below
    r = client.post(f"/v1/firms/{firm}/matches", json=need, headers=served_world.headers("bank"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usc_code"] == firm
    assert len(body["financing"]) + len(body["insurance"]) >= 12
    for m in body["financing"]:
        assert m["eligible"] == all(t["pass"] for t in m["trace"])
        assert m["price"]["rate"] > 0
    # The bank's access shows in the firm's access log.
    log = client.get(
        f"/v1/firms/{firm}/access-log", headers=served_world.headers("enterprise")
    ).json()
    assert any(
        rec["endpoint"].endswith("/matches") and rec["institution"] == "Pengcheng Commercial Bank"
        for rec in log["records"]
    )


def test_access_rules(client: TestClient, served_world: ServedWorld) -> None:
    firm, other = served_world.firm, served_world.other_firm
    h = served_world.headers
    assert (
        client.post(
            f"/v1/firms/{firm}/matches", json=NEED, headers=h("bank_no_consent")
        ).status_code
        == 403
    )
    assert (
        client.post(f"/v1/firms/{other}/matches", json=NEED, headers=h("enterprise")).status_code
        == 403
    )
    assert (
        client.post(f"/v1/firms/{firm}/matches", json=NEED, headers=h("regulator")).status_code
        == 403
    )
    # The insurer's consent has scope "quote", not "score".
    assert (
        client.post(f"/v1/firms/{firm}/matches", json=NEED, headers=h("insurer")).status_code == 403
    )
    assert client.post(f"/v1/firms/{firm}/quote", json=QUOTE, headers=h("bank")).status_code == 403
    assert client.get("/v1/regulator/overview", headers=h("bank")).status_code == 403


def test_enterprise_sees_own_matches_with_recourse(
    client: TestClient, served_world: ServedWorld
) -> None:
    r = client.post(
        f"/v1/firms/{served_world.firm}/matches",
        json=NEED,
        headers=served_world.headers("enterprise"),
    )
    assert r.status_code == 200
    inelig = [m for m in r.json()["financing"] if not m["eligible"]]
    for m in inelig:
        assert m["recourse"]["hints"]
        failed = {t["field"] for t in m["trace"] if not t["pass"]}
        assert {h["field"] for h in m["recourse"]["hints"]} == failed


def test_bad_need_is_a_problem_naming_the_field(
    client: TestClient, served_world: ServedWorld
) -> None:
    bad = {**NEED, "amount_cny": -5, "colour": "red"}
    r = client.post(
        f"/v1/firms/{served_world.firm}/matches", json=bad, headers=served_world.headers("bank")
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"body.amount_cny", "body.colour"} <= fields


def test_loan_price_rises_with_lgd_and_falls_with_cover(
    client: TestClient, served_world: ServedWorld
) -> None:
    url = f"/v1/firms/{served_world.firm}/loan-price"
    h = served_world.headers("bank")
    plain = client.post(url, json={"tenor_months": 12}, headers=h).json()["price"]
    insured = client.post(url, json={"tenor_months": 12, "insured_cover": 0.9}, headers=h).json()[
        "price"
    ]
    assert insured["lgd"] < plain["lgd"] and insured["rate"] < plain["rate"]
    r = client.post(url, json={"product_id": "sinosure_sme_easy_cover"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.product_id"


def _problem_field(r: Any) -> tuple[str, str]:
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    return err["field"], err.get("expected") or ""


def test_pricing_refuses_what_the_product_forbids(
    client: TestClient, served_world: ServedWorld
) -> None:
    firm, h = served_world.firm, served_world.headers("bank")
    url = f"/v1/firms/{firm}/loan-price"
    # pcb_cbec_credit_loan has no policy assignment: a cover cannot lower its LGD.
    r = client.post(
        url, json={"product_id": "pcb_cbec_credit_loan", "insured_cover": 0.9}, headers=h
    )
    assert _problem_field(r)[0] == "body.insured_cover"
    assert "does not accept" in r.json()["errors"][0]["message"]
    # lgd and insured_cover together are refused, not one of them silently dropped.
    r = client.post(url, json={"lgd": 0.3, "insured_cover": 0.9}, headers=h)
    assert _problem_field(r)[0] == "body.insured_cover"
    # A product that accepts assignment does take the cover.
    plain = client.post(url, json={"product_id": "pcb_export_order_financing"}, headers=h).json()
    covered = client.post(
        url, json={"product_id": "pcb_export_order_financing", "insured_cover": 0.9}, headers=h
    ).json()
    assert covered["price"]["lgd"] < plain["price"]["lgd"]
    # A purpose outside the catalog's vocabulary is refused, listing the ones there are.
    r = client.post(f"/v1/firms/{firm}/matches", json={**NEED, "purpose": "holiday"}, headers=h)
    field, expected = _problem_field(r)
    assert field == "body.purpose" and "working_capital" in expected and "inventory" in expected


def test_upstream_quote_never_replaces_the_buyer_country(
    client: TestClient, served_world: ServedWorld
) -> None:
    url = f"/v1/firms/{served_world.firm}/quote"
    h = served_world.headers("insurer")
    upstream = {"product_id": "sinosure_upstream_purchase_cover", "amount_usd": 50000}
    r = client.post(url, json={**upstream, "buyer_country": "USA"}, headers=h)
    field, expected = _problem_field(r)
    assert field == "body.buyer_country" and "CHN" in expected
    ok = client.post(url, json=upstream, headers=h)
    assert ok.status_code == 200 and ok.json()["quote"]["buyer_country"] == "CHN"
    r = client.post(url, json={"amount_usd": 50000, "terms": "O/A", "credit_days": 60}, headers=h)
    assert _problem_field(r)[0] == "body.buyer_country"


def test_consent_to_an_unknown_institution_is_refused(
    client: TestClient, served_world: ServedWorld
) -> None:
    url = f"/v1/firms/{served_world.firm}/consents"
    body = {"scopes": ["score"], "purpose": "loan", "expires_at": "2099-01-01T00:00:00Z"}
    h = served_world.headers("enterprise")
    r = client.post(url, json={**body, "institution": "No Such Bank"}, headers=h)
    assert _problem_field(r)[0] == "body.institution"
    assert "Pengcheng Commercial Bank" in r.json()["errors"][0]["message"]
    assert (
        client.post(url, json={**body, "institution": "Other Bank"}, headers=h).status_code == 201
    )


def test_insurer_quote_and_decline(client: TestClient, served_world: ServedWorld) -> None:
    url = f"/v1/firms/{served_world.firm}/quote"
    h = served_world.headers("insurer")
    q = client.post(url, json=QUOTE, headers=h)
    assert q.status_code == 200, q.text
    body = q.json()["quote"]
    if body["decision"] == "quoted":
        assert body["premium_usd"] > 0 and len(body["components"]) == 7
    declined = client.post(url, json={**QUOTE, "buyer_country": "RUS"}, headers=h).json()["quote"]
    assert declined["decision"] == "declined"
    assert "country_category" in [d["code"] for d in declined["declines"]]
    bad = client.post(url, json={**QUOTE, "buyer_country": "XXX"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.buyer_country"
    bad = client.post(url, json={**QUOTE, "terms": "CAD"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.terms"


def test_countries(client: TestClient, served_world: ServedWorld) -> None:
    body = client.get("/v1/countries", headers=served_world.headers("insurer")).json()
    cats = {c["iso3"]: c for c in body["countries"]}
    assert cats["USA"]["category"] == "HI" and cats["RUS"]["declined"]


def test_regulator_overview_and_measure19(client: TestClient, served_world: ServedWorld) -> None:
    h = served_world.headers("regulator")
    ov = client.get("/v1/regulator/overview", headers=h).json()
    n = len(served_world.loaded.position)
    assert sum(g["count"] for g in ov["grades"]) == n
    assert all(0 <= p["share"] <= 1 for p in ov["products"])
    assert "usc_code" not in str(ov)  # aggregates only
    base = client.get("/v1/regulator/measure19", headers=h).json()
    grades = served_world.loaded.model.master_scale.grades
    loose = client.get(
        "/v1/regulator/measure19", params={"min_grade": grades[-1]}, headers=h
    ).json()
    assert loose["scenario"]["covered_firms"] >= base["scenario"]["covered_firms"]
    assert loose["expected_loss_change_usd"] >= 0
    r = client.get("/v1/regulator/measure19", params={"min_grade": "QQ"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.min_grade"
