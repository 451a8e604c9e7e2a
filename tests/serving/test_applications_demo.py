"""``kuaxin demo`` seeds applications in several states so every page has content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import headers

ORGS = {
    "bank": "Demo Bank",
    "insurer": "Demo Insurer",
    "enterprise": "Demo Enterprise",
    "regulator": "Demo Commerce Bureau",
    "admin": "Demo Operations",
}


def test_demo_seeds_applications_in_several_states(
    tmp_path: Path, make_service: Any, svc_loaded: Any, svc_firms: Any
) -> None:
    from serving.db import Database, upgrade
    from serving.demo import DEMO_APPLICATIONS, seed_applications
    from serving.market import load_market

    url = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    upgrade(url)
    db = Database(url)
    seeded = seed_applications(db, svc_loaded, load_market(), ORGS, svc_firms.a)
    assert len(seeded) == len(DEMO_APPLICATIONS)
    assert {a["status"] for a in seeded} == {
        "submitted",
        "under_review",
        "info_requested",
        "approved",
        "declined",
        "disbursed",
    }
    assert seed_applications(db, svc_loaded, load_market(), ORGS, svc_firms.a) == []  # idempotent
    db.dispose()
    svc = make_service(url)
    c = svc.client
    firm = c.get(
        f"/v1/firms/{svc_firms.a}/applications",
        headers=headers(svc.key("enterprise", "Demo Enterprise", svc_firms.a)),
    ).json()
    assert len(firm) == 3
    bank = headers(svc.key("bank", "Demo Bank"))
    inbox = c.get("/v1/provider/applications", headers=bank).json()
    assert len(inbox) == len(DEMO_APPLICATIONS) - 1
    declined = next(a for a in inbox if a["status"] == "declined")
    view = c.get(f"/v1/provider/applications/{declined['id']}", headers=bank).json()
    assert view["decision"]["notice"]["zh"] and view["consent_state"] == "active"
    mine = c.get("/v1/provider/products", headers=bank).json()["products"]
    assert {p["id"] for p in mine} == {"demo_bank_trade_loan", "demo_bank_order_financing"}
    insurer = c.get(
        "/v1/provider/applications", headers=headers(svc.key("insurer", "Demo Insurer"))
    ).json()
    assert [a["product_id"] for a in insurer] == ["demo_insurer_easy_cover"]
    stats = c.get(
        "/v1/regulator/applications", headers=headers(svc.key("regulator", "Demo Commerce Bureau"))
    ).json()
    assert stats["totals"]["applications"] == len(DEMO_APPLICATIONS)
