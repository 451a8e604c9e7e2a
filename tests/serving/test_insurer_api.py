# ruff: noqa: F811  (fixtures are imported, then requested by name)
"""The insurer API's behaviour: platform-graded quotes, limits in aggregate, claims, the tail."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kx_insurer import InsurerWorld, make_insurer_world
from kx_service import served_world  # noqa: F401


@pytest.fixture(scope="module")
def w(served_world: Any, tmp_path_factory: pytest.TempPathFactory) -> InsurerWorld:
    return make_insurer_world(served_world, tmp_path_factory.mktemp("insurer_api"))


@pytest.fixture(scope="module")
def client(w: InsurerWorld) -> Any:
    with TestClient(w.app()) as c:
        yield c


SHIP = {"terms": "O/A", "credit_days": 60, "amount_usd": 50_000}


def test_quote_uses_the_platform_grade_for_a_known_buyer(
    client: TestClient, w: InsurerWorld
) -> None:
    url = f"/v1/firms/{w.firm}/quote"
    known = client.post(
        url,
        json={"buyer_id": "BYDEU000002", "buyer_grade": "A", **SHIP},
        headers=w.headers("insurer"),
    )
    assert known.status_code == 200, known.text
    q = known.json()["quote"]
    assert (q["buyer_grade"], q["buyer_grade_source"], q["buyer_grade_as_of"]) == (
        "C",
        "platform",
        "2025-07-01",
    )
    assert q["buyer_country"] == "DEU" and any("platform" in n["message_en"] for n in q["notes"])
    unknown = client.post(
        url,
        json={"buyer_id": "BYDEU999999", "buyer_country": "DEU", "buyer_grade": "A", **SHIP},
        headers=w.headers("insurer"),
    ).json()["quote"]
    assert unknown["buyer_grade_source"] == "caller" and unknown["buyer_grade"] == "A"
    assert any(n["code"] == "unknown_buyer" for n in unknown["notes"])
    missing = client.post(
        url, json={"buyer_id": "BYDEU999999", **SHIP}, headers=w.headers("insurer")
    )
    assert missing.status_code == 422 and "buyer_country" in missing.text


def test_limit_requests_never_exceed_the_buyer_limit_in_aggregate(
    client: TestClient, w: InsurerWorld
) -> None:
    buyer = "BYUSA000001"
    limit = client.get(f"/v1/buyers/{buyer}", headers=w.headers("insurer")).json()["limit"][
        "limit_usd"
    ]
    post = lambda firm, key, amount: client.post(  # noqa: E731
        f"/v1/firms/{firm}/buyer-limits",
        json={"buyer_id": buyer, "amount_usd": amount},
        headers=w.headers(key),
    )
    a = post(w.firm, "insurer", 0.7 * limit).json()
    assert a["decision"] == "granted" and a["buyer_grade_source"] == "platform"
    # The other firm asks through its own key, naming the insurer.
    b = client.post(
        f"/v1/firms/{w.other_firm}/buyer-limits",
        headers=w.headers("enterprise_other"),
        json={"buyer_id": buyer, "amount_usd": 0.7 * limit, "insurer": "Sinosure Shenzhen"},
    ).json()
    assert b["decision"] == "reduced" and b["granted_usd"] == pytest.approx(0.3 * limit, abs=1000)
    book = client.get("/v1/insurer/limits", headers=w.headers("insurer")).json()
    agg = {r["buyer_id"]: r["aggregate_usd"] for r in book["by_buyer"]}
    assert agg[buyer] <= limit
    smaller = post(w.firm, "insurer", 10_000).json()  # replaces the firm's own 70 %: fits
    assert smaller["decision"] == "granted"
    assert post(w.firm, "insurer", 10 * limit).json()["decision"] == "reduced"
    risky = client.post(
        f"/v1/firms/{w.firm}/buyer-limits",
        json={"buyer_id": "BYVNM000003", "amount_usd": 1000},
        headers=w.headers("insurer"),
    ).json()
    assert risky["decision"] == "refused" and risky["reason"]["code"] == "pd_refused"
    bad = client.post(
        f"/v1/firms/{w.firm}/buyer-limits",
        json={"buyer_id": "nope", "amount_usd": 1},
        headers=w.headers("insurer"),
    )
    assert bad.status_code == 422 and "buyer_id" in bad.text


def test_claim_indemnity_is_cover_times_loss_within_the_approved_limit(
    client: TestClient, w: InsurerWorld, tmp_path: Any
) -> None:
    buyer = "BYDEU000002"
    lim = client.post(
        f"/v1/firms/{w.firm}/buyer-limits",
        json={"buyer_id": buyer, "amount_usd": 20_000},
        headers=w.headers("insurer"),
    ).json()
    assert lim["decision"] == "granted"
    r = client.post(
        f"/v1/firms/{w.firm}/claims",
        headers=w.headers("insurer"),
        json={
            "policy_id": "P9",
            "buyer_id": buyer,
            "due_date": "2025-01-10",
            "notified_date": "2025-02-01",
            "loss_usd": 50_000,
            "cover": 0.9,
        },
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert (
        c["status"] == "paid"
        and c["insured_loss_usd"] == 20_000
        and c["indemnity_usd"] == pytest.approx(18_000)
    )
    late = client.post(
        f"/v1/firms/{w.firm}/claims",
        headers=w.headers("insurer"),
        json={
            "policy_id": "P9",
            "buyer_id": buyer,
            "due_date": "2025-01-10",
            "notified_date": "2025-06-01",
            "loss_usd": 5_000,
        },
    ).json()
    assert late["status"] == "declined" and late["reasons"][0]["code"] == "claim_late"
    listed = client.get("/v1/insurer/claims", headers=w.headers("insurer")).json()
    assert listed["totals"]["paid"]["indemnity_usd"] == pytest.approx(18_000)
    assert listed["totals"]["declined"]["claims"] == 1
    wrong = client.post(
        f"/v1/firms/{w.firm}/claims",
        headers=w.headers("insurer"),
        json={
            "policy_id": "P9",
            "buyer_id": buyer,
            "due_date": "2025-03-10",
            "notified_date": "2025-02-01",
            "loss_usd": 5_000,
        },
    )
    assert wrong.status_code == 422


def test_plan_quote_and_the_books_tail(client: TestClient, w: InsurerWorld) -> None:
    plan = {
        "shipments": [
            {"buyer_id": "BYUSA000001", **SHIP},
            {"buyer_id": "BYUSA000001", **SHIP},
            {"buyer_country": "VNM", "buyer_grade": "B", **SHIP},
        ]
    }
    r = client.post(f"/v1/firms/{w.firm}/quote-plan", json=plan, headers=w.headers("insurer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["shipments"] == 3 and body["totals"]["platform_graded"] == 2
    assert body["quotes"][2]["buyer_grade_source"] == "caller"
    bad = client.post(
        f"/v1/firms/{w.firm}/quote-plan",
        headers=w.headers("insurer"),
        json={"shipments": [{"buyer_id": "BYXXX999999", **SHIP}]},
    )
    assert bad.status_code == 422 and "shipments[0].buyer_country" in bad.text
    book = client.get("/v1/insurer/book?scenarios=2000&seed=5", headers=w.headers("insurer")).json()
    assert book["buyers"] >= 2 and book["scenarios"] == 2000
    again = client.get(
        "/v1/insurer/book?scenarios=2000&seed=5", headers=w.headers("insurer")
    ).json()
    assert again["tail"] == book["tail"]  # reproducible seed
    for t in book["tail"]:
        assert t["es_usd"] >= t["var_usd"] >= 0


def test_regulator_sees_the_measure19_tail_curve(client: TestClient, w: InsurerWorld) -> None:
    r = client.get("/v1/regulator/measure19/tail?steps=3", headers=w.headers("regulator"))
    assert r.status_code == 200, r.text
    curve = r.json()["curve"]
    assert len(curve) == 3
    for a, b in itertools.pairwise(curve):
        assert (
            b["insured_exposure_usd"] >= a["insured_exposure_usd"] and b["var_usd"] >= a["var_usd"]
        )
    assert "extra_cover_under_same_var_usd" in r.json()["tail"]
    assert (
        client.get("/v1/regulator/measure19/tail", headers=w.headers("insurer")).status_code == 403
    )
    assert (
        client.get(
            "/v1/regulator/measure19/tail?min_grade=Z", headers=w.headers("regulator")
        ).status_code
        == 422
    )
