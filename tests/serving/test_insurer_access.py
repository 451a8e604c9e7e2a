# ruff: noqa: F811  (fixtures are imported, then requested by name)
"""Who may see what on the insurer's side: buyers, limits, plan quotes, claims and the book.

Rules (serving/routers/buyers.py, insurer.py): insurer and admin keys see a buyer's grade,
limit and reasons, the experience only over enough exporters; an enterprise key sees a buyer's
grade only; banks and regulators no buyer. Firm actions (limit request, plan quote, claim) need
the firm's own key or an insurer with the firm's ``quote`` consent (a bank with that consent
may quote a plan, as it may quote one shipment, but does not request limits or file claims),
and are audited. Books are the insurer's own.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from kx_insurer import INSURER, InsurerWorld, insurer_world  # noqa: F401
from kx_service import served_world  # noqa: F401

WHO = ("insurer", "insurer_other", "bank", "enterprise", "enterprise_other", "regulator", "admin")


@pytest.fixture(scope="module")
def client(insurer_world: InsurerWorld) -> Any:
    with TestClient(insurer_world.app()) as c:
        yield c


def _audit_rows(w: InsurerWorld) -> int:
    from serving.db import Database
    from serving.models import AuditLog

    db = Database(w.url)
    with db.session() as s:
        n = s.scalar(sa.select(sa.func.count()).select_from(AuditLog)) or 0
    db.dispose()
    return n


BUYER_VIEW = {
    "insurer": "full",
    "insurer_other": "full",
    "admin": "full",
    "enterprise": "grade",
    "enterprise_other": "grade",
    "bank": None,
    "regulator": None,
}


@pytest.mark.parametrize("who", WHO)
def test_buyer_lookup_matrix(client: TestClient, insurer_world: InsurerWorld, who: str) -> None:
    r = client.get("/v1/buyers/BYUSA000001", headers=insurer_world.headers(who))
    view = BUYER_VIEW[who]
    if view is None:
        assert r.status_code == 403, r.text
        return
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grade"] == "A" and body["as_of"] == "2025-07-01" and body["source"] == "buyer-test"
    if view == "grade":
        assert not {"pd", "limit", "reasons", "experience"} & set(body)
    else:
        assert body["detail_shown"] and body["experience"]["exporters_12m"] == 5
        assert body["limit"]["limit_usd"] > 0 and body["reasons"][0]["value"] == 1.5


def test_thin_experience_is_withheld_from_insurers(
    client: TestClient, insurer_world: InsurerWorld
) -> None:
    body = client.get("/v1/buyers/BYDEU000002", headers=insurer_world.headers("insurer")).json()
    assert body["detail_shown"] is False and "experience" not in body
    assert body["reasons"] == [{"feature": "dbt_3m"}]  # the value came from one exporter
    assert body["grade"] == "C" and body["limit"]["limit_usd"] > 0


def test_buyer_list_only_for_insurers_and_admins(
    client: TestClient, insurer_world: InsurerWorld
) -> None:
    for who in WHO:
        r = client.get("/v1/buyers", headers=insurer_world.headers(who))
        assert r.status_code == (200 if who in ("insurer", "insurer_other", "admin") else 403), who
    assert client.get("/v1/buyers").status_code == 401


FIRM_ACTIONS = {
    "insurer": True,
    "enterprise": True,
    "admin": False,
    "insurer_other": False,
    "bank": False,
    "enterprise_other": False,
    "regulator": False,
}


@pytest.mark.parametrize("who", WHO)
def test_firm_actions_need_the_firm_or_a_consenting_insurer(
    client: TestClient, insurer_world: InsurerWorld, who: str
) -> None:
    w = insurer_world
    extra = {"insurer": INSURER} if who in ("enterprise", "admin", "bank", "regulator") else {}
    calls = [
        ("/buyer-limits", {"buyer_id": "BYUSA000001", "amount_usd": 10_000, **extra}),
        (
            "/quote-plan",
            {
                "shipments": [
                    {
                        "buyer_id": "BYUSA000001",
                        "terms": "O/A",
                        "credit_days": 60,
                        "amount_usd": 5_000,
                    }
                ]
            },
        ),
        (
            "/claims",
            {
                "policy_id": "P1",
                "buyer_id": "BYUSA000001",
                "due_date": "2025-01-10",
                "notified_date": "2025-02-01",
                "loss_usd": 1000,
                **extra,
            },
        ),
    ]
    for path, body in calls:
        before = _audit_rows(w)
        r = client.post(f"/v1/firms/{w.firm}{path}", json=body, headers=w.headers(who))
        if FIRM_ACTIONS[who] or (who == "bank" and path == "/quote-plan"):
            assert r.status_code in (200, 201), (path, r.text)
            assert _audit_rows(w) == before + 1, path
        else:
            assert r.status_code == 403, (who, path, r.text)
            assert _audit_rows(w) == before


@pytest.mark.parametrize("who", WHO)
def test_books_are_the_insurers_own(
    client: TestClient, insurer_world: InsurerWorld, who: str
) -> None:
    for path in ("/v1/insurer/limits", "/v1/insurer/claims", "/v1/insurer/book?scenarios=500"):
        r = client.get(
            path + ("&" if "?" in path else "?") + f"insurer={INSURER}" if who == "admin" else path,
            headers=insurer_world.headers(who),
        )
        if who in ("insurer", "insurer_other", "admin"):
            assert r.status_code == 200, (who, path, r.text)
            org = INSURER if who in ("insurer", "admin") else "Other Insurer"
            assert r.json()["insurer"] == org
        else:
            assert r.status_code == 403, (who, path)
    # An insurer cannot read another insurer's book by naming it.
    r = client.get(
        "/v1/insurer/limits?insurer=Other%20Insurer", headers=insurer_world.headers("insurer")
    )
    assert r.status_code == 422 and "insurer" in r.text
