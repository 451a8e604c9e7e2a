"""Institutions manage their own products: validated as the YAML, versioned, owner-only; a frozen
application keeps the terms of the version it was made on.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apps_world import BANK, NEED, AppsWorld, build


@pytest.fixture()
def world(db_url: str, make_service: Any, svc_firms: Any) -> AppsWorld:
    return build(make_service(db_url), svc_firms.a, svc_firms.b)


def _seed(pid: str = "pcb_cbec_credit_loan") -> dict[str, Any]:
    from tradefinance.products import load_products

    return load_products()[pid].model_dump(mode="json")


def _mine(new_id: str = "pcb_green_loan") -> dict[str, Any]:
    spec = copy.deepcopy(_seed())
    spec.update(id=new_id, name_en="Green Trade Loan", name_zh="绿色贸易贷")
    return spec


def test_create_update_retire_and_frozen_terms(world: AppsWorld) -> None:
    c = world.svc.client
    r = c.post("/v1/provider/products", json={"product": _mine()}, headers=world.h("bank"))
    assert r.status_code == 201, r.text
    assert (r.json()["version"], r.json()["owner_org"]) == (1, BANK)
    listed = {p["id"] for p in c.get("/v1/products", headers=world.h("firm_a")).json()["products"]}
    assert "pcb_green_loan" in listed
    mine = {
        p["id"] for p in c.get("/v1/provider/products", headers=world.h("bank")).json()["products"]
    }
    assert {"pcb_green_loan", "pcb_cbec_credit_loan"} <= mine and "nhb_packing_loan" not in mine
    assert (
        c.post(
            "/v1/provider/products", json={"product": _mine()}, headers=world.h("bank")
        ).status_code
        == 409
    )

    app = world.apply(product_id="pcb_green_loan").json()
    assert app["provider_org"] == BANK and app["frozen"]["product"]["version"] == 1
    # Version 2 narrows the rate range; the application keeps version 1's terms.
    v2 = _mine()
    v2["pricing"] = {**v2["pricing"], "rate_min": 0.08, "rate_max": 0.12}
    r = c.put("/v1/provider/products/pcb_green_loan", json={"product": v2}, headers=world.h("bank"))
    assert r.status_code == 200 and r.json()["version"] == 2
    world.open(app["id"])
    terms = {"amount_cny": 200000, "rate": 0.05, "tenor_months": 6}  # inside v1, outside v2
    r = world.decide(app["id"], {"action": "approve", "terms": terms})
    assert r.status_code == 200, r.text
    later = world.apply(product_id="pcb_green_loan").json()
    assert later["frozen"]["product"]["version"] == 2
    world.open(later["id"])
    r = world.decide(later["id"], {"action": "approve", "terms": terms})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.terms.rate"

    # A future version is not yet in force.
    v3 = _mine()
    v3["name_en"] = "Green Trade Loan 2027"
    start = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    r = c.put(
        "/v1/provider/products/pcb_green_loan",
        json={"product": v3, "effective_from": start},
        headers=world.h("bank"),
    )
    assert r.status_code == 200 and r.json()["version"] == 3
    names = {
        p["id"]: p["name_en"]
        for p in c.get("/v1/products", headers=world.h("bank")).json()["products"]
    }
    assert names["pcb_green_loan"] == "Green Trade Loan"

    r = c.delete("/v1/provider/products/pcb_green_loan", headers=world.h("bank"))
    assert r.status_code == 200 and r.json()["retired"]
    listed = {p["id"] for p in c.get("/v1/products", headers=world.h("firm_a")).json()["products"]}
    assert "pcb_green_loan" not in listed
    r = world.apply(product_id="pcb_green_loan")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.product_id"
    versions = c.get(
        "/v1/provider/products/pcb_green_loan/versions", headers=world.h("bank")
    ).json()
    assert [v["version"] for v in versions] == [1, 2, 3, 4] and versions[-1]["retired"]
    # The frozen application still shows version 1 as it was.
    frozen = c.get(
        f"/v1/firms/{world.a}/applications/{app['id']}", headers=world.h("firm_a")
    ).json()["frozen"]
    assert frozen["product"]["pricing"]["rate_min"] == _seed()["pricing"]["rate_min"]


def test_a_provider_edits_only_its_own_products(world: AppsWorld) -> None:
    c = world.svc.client
    seed = _seed()
    for who in ("other_bank", "insurer"):
        r = c.put(
            "/v1/provider/products/pcb_cbec_credit_loan",
            json={"product": seed},
            headers=world.h(who),
        )
        assert r.status_code == 403
        assert (
            c.delete("/v1/provider/products/pcb_cbec_credit_loan", headers=world.h(who)).status_code
            == 403
        )
        assert (
            c.get(
                "/v1/provider/products/pcb_cbec_credit_loan/versions", headers=world.h(who)
            ).status_code
            == 403
        )
    for who in ("firm_a", "regulator"):
        assert (
            c.post(
                "/v1/provider/products", json={"product": _mine()}, headers=world.h(who)
            ).status_code
            == 403
        )
    assert (
        c.put(
            "/v1/provider/products/nope", json={"product": seed}, headers=world.h("bank")
        ).status_code
        == 404
    )
    # The owner may version its seed product.
    r = c.put(
        "/v1/provider/products/pcb_cbec_credit_loan",
        json={"product": seed},
        headers=world.h("bank"),
    )
    assert r.status_code == 200 and r.json()["version"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["amount"].update(min_cny=5e7), "body.product.amount"),
        (lambda p: p["pricing"].update(rate_max=1.5), "body.product.pricing.rate_max"),
        (
            lambda p: p["rules"].append({"field": "no_such_feature", "op": ">=", "value": 1}),
            "body.product.rules.5.field",
        ),
        (
            lambda p: p["rules"].append({"field": "grade", "op": ">=", "value": "ZZ"}),
            "body.product.rules.5.value",
        ),
        (lambda p: p.update(kind="export_credit_insurance"), "body.product.insurance"),
        (lambda p: p.update(id="Bad Id"), "body.product.id"),
        (lambda p: p.update(colour="red"), "body.product.colour"),
    ],
)
def test_products_are_validated_as_the_yaml_catalog(
    world: AppsWorld, change: Any, field: str
) -> None:
    spec = _mine()
    change(spec)
    r = world.svc.client.post(
        "/v1/provider/products", json={"product": spec}, headers=world.h("bank")
    )
    assert r.status_code == 422, r.text
    got = r.json()["errors"][0]["field"]
    assert got == field or (field == "body.product.insurance" and got == "body.product"), got


def test_a_bank_publishes_financing_and_an_insurer_insurance(world: AppsWorld) -> None:
    r = world.svc.client.post(
        "/v1/provider/products", json={"product": _mine()}, headers=world.h("insurer")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.product.kind"
    cover = copy.deepcopy(_seed("sinosure_sme_easy_cover"))
    cover["id"] = "sinosure_green_cover"
    r = world.svc.client.post(
        "/v1/provider/products", json={"product": cover}, headers=world.h("insurer")
    )
    assert r.status_code == 201, r.text
    app = world.apply(product_id="sinosure_green_cover", amount_cny=NEED["amount_cny"]).json()
    assert app["provider_org"] == "Sinosure Shenzhen"
    world.open(app["id"], "insurer")
    r = world.decide(
        app["id"],
        {"action": "approve", "terms": {"cover": 0.99, "credit_days": 90, "limit_usd": 50000}},
        "insurer",
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.terms.cover"
    r = world.decide(
        app["id"],
        {"action": "approve", "terms": {"cover": 0.7, "credit_days": 90, "limit_usd": 50000}},
        "insurer",
    )
    assert r.status_code == 200 and r.json()["approved_amount_cny"] > 0
