# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""The firm's access log: filter by the reader's role, leave out its own views, page back."""

from __future__ import annotations

from fastapi.testclient import TestClient
from kx_service import ServedWorld, served_world  # noqa: F401


def test_access_log_filters_and_pages(served_world: ServedWorld) -> None:
    firm = served_world.firm
    ent, bank = served_world.headers("enterprise"), served_world.headers("bank")
    with TestClient(served_world.app()) as client:
        for _ in range(3):
            assert client.get(f"/v1/firms/{firm}/score", headers=ent).status_code == 200
        need = {"amount_cny": 300000, "purpose": "inventory", "tenor_months": 6, "recourse": False}
        assert client.post(f"/v1/firms/{firm}/matches", json=need, headers=bank).status_code == 200
        url = f"/v1/firms/{firm}/access-log"
        everything = client.get(url, params={"limit": 1000}, headers=ent).json()["records"]
        others = client.get(url, params={"others_only": True}, headers=ent).json()["records"]
        assert {r["role"] for r in everything} >= {"enterprise", "bank"}
        assert others and all(r["role"] != "enterprise" for r in others)
        assert [r["id"] for r in others] == [
            r["id"] for r in everything if r["role"] != "enterprise"
        ]
        banks = client.get(url, params={"role": "bank"}, headers=ent).json()["records"]
        assert banks and {r["role"] for r in banks} == {"bank"}
        # Pages of 2 walk back through every row exactly once, newest first.
        seen, before = [], None
        while True:
            params = {"limit": 2, **({"before_id": before} if before else {})}
            page = client.get(url, params=params, headers=ent).json()
            seen += [r["id"] for r in page["records"]]
            before = page["next_before_id"]
            if before is None:
                break
        assert seen == [r["id"] for r in everything]
        assert client.get(url, params={"role": "thief"}, headers=ent).status_code == 422
