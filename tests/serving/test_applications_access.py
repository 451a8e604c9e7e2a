"""The access matrix of the applications endpoints: every endpoint x role x ownership, on SQLite
and PostgreSQL (to be folded into the service's one access table).

Callers: no key, firm A's key (owner of the application), firm B's key, the bank owning the
product, another bank, an insurer, a regulator, an admin. Where the owner's call would change
state, the target is chosen so that access is granted and the state machine refuses (409) or
validation does (422): the status then shows the access check passed without side effects.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from apps_world import APPROVE, PRODUCT, AppsWorld, build

CALLERS = ["none", "firm_a", "firm_b", "bank", "other_bank", "insurer", "regulator", "admin"]
F = "{a}"  # firm A in paths

# name -> (method, path, body, expected status per caller in CALLERS order)
# fmt: off
MATRIX: dict[str, tuple[str, str, Any, list[int]]] = {
    "apply": ("POST", f"/v1/firms/{F}/applications", "apply", [401, 201, 403, 403, 403, 403, 403, 201]),
    "need": ("POST", f"/v1/firms/{F}/needs", "need", [401, 0, 403, 403, 403, 403, 403, 0]),
    "firm_list": ("GET", f"/v1/firms/{F}/applications", None, [401, 200, 403, 403, 403, 403, 403, 200]),
    "firm_get": ("GET", f"/v1/firms/{F}/applications/{{open}}", None, [401, 200, 403, 403, 403, 403, 403, 200]),
    "respond": ("POST", f"/v1/firms/{F}/applications/{{open}}/respond", "note", [401, 409, 403, 403, 403, 403, 403, 409]),
    "withdraw": ("POST", f"/v1/firms/{F}/applications/{{closed}}/withdraw", None, [401, 409, 403, 403, 403, 403, 403, 409]),
    "inbox": ("GET", "/v1/provider/applications", None, [401, 403, 403, 200, 200, 200, 403, 403]),
    "open": ("GET", "/v1/provider/applications/{open}", None, [401, 403, 403, 200, 403, 403, 403, 403]),
    "decide": ("POST", "/v1/provider/applications/{closed}/decision", "approve", [401, 403, 403, 409, 403, 403, 403, 403]),
    "disburse": ("POST", "/v1/provider/applications/{closed}/disbursement", "disb", [401, 403, 403, 409, 403, 403, 403, 403]),
    "repay": ("POST", "/v1/provider/applications/{closed}/repayments", "repay", [401, 403, 403, 409, 403, 403, 403, 403]),
    "upload": ("POST", "/v1/provider/outcomes", "csv", [401, 403, 403, 200, 200, 200, 403, 403]),
    "quarantine": ("GET", "/v1/provider/outcomes/quarantine", None, [401, 403, 403, 200, 200, 200, 403, 403]),
    "my_products": ("GET", "/v1/provider/products", None, [401, 403, 403, 200, 200, 200, 403, 403]),
    "create_product": ("POST", "/v1/provider/products", "bad_product", [401, 403, 403, 422, 422, 422, 403, 403]),
    "update_product": ("PUT", f"/v1/provider/products/{PRODUCT}", "bad_product", [401, 403, 403, 422, 403, 403, 403, 403]),
    "versions": ("GET", f"/v1/provider/products/{PRODUCT}/versions", None, [401, 403, 403, 200, 403, 403, 403, 403]),
    "retire": ("DELETE", "/v1/provider/products/pcb_matrix_loan", None, [401, 403, 403, 200, 403, 403, 403, 403]),
    "statistics": ("GET", "/v1/regulator/applications", None, [401, 403, 403, 403, 403, 403, 200, 200]),
}
# fmt: on
BODIES: dict[str, Any] = {
    "apply": {
        "product_id": PRODUCT,
        "amount_cny": 200000,
        "purpose": "working_capital",
        "tenor_months": 6,
    },
    "need": {"amount_cny": 200000, "purpose": "working_capital", "tenor_months": 6},
    "note": {"note": "here it is"},
    "approve": APPROVE,
    "disb": {"date": "2026-01-05", "amount_cny": 1000},
    "repay": {"date": "2026-01-05", "status": "current"},
    "bad_product": {"product": {"id": "x"}},
}
CSV = "application_id,event,date,amount_cny,days_past_due,status,outstanding_cny\n"
CASES = [(name, i) for name in MATRIX for i in range(len(CALLERS))]


@pytest.fixture(scope="module")
def matrix_world(module_db_url: str, svc_loaded: Any, svc_firms: Any) -> Any:
    from conftest import Service
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import Database
    from serving.settings import Settings
    from serving.state import ServingState
    from tradefinance.products import load_products

    app = create_app(
        Settings(database_url=module_db_url, load_on_start=False), ServingState(svc_loaded)
    )
    with TestClient(app) as client:
        svc = Service(client=client, app=app, db=Database(module_db_url), loaded=svc_loaded)
        world = build(svc, svc_firms.a, svc_firms.b)
        opened = world.apply().json()["id"]
        world.open(opened)
        closed = world.apply().json()["id"]
        world.open(closed)
        world.decide(closed, {"action": "decline", "reasons": ["policy:other"]})
        spec = copy.deepcopy(load_products()[PRODUCT].model_dump(mode="json"))
        spec["id"] = "pcb_matrix_loan"
        r = client.post("/v1/provider/products", json={"product": spec}, headers=world.h("bank"))
        assert r.status_code == 201
        yield world, {"open": opened, "closed": closed}
        svc.db.dispose()


@pytest.mark.parametrize(("name", "i"), CASES, ids=[f"{n}-{CALLERS[i]}" for n, i in CASES])
def test_access_matrix(matrix_world: tuple[AppsWorld, dict[str, int]], name: str, i: int) -> None:
    world, ids = matrix_world
    method, path, body_key, expected = MATRIX[name]
    caller = CALLERS[i]
    url = path.replace("{a}", world.a).format(**ids)
    kwargs: dict[str, Any] = {"headers": {} if caller == "none" else world.h(caller)}
    if body_key == "csv":
        kwargs["content"] = CSV
        kwargs["headers"] = {**kwargs["headers"], "Content-Type": "text/csv"}
    elif body_key is not None:
        kwargs["json"] = BODIES[body_key]
    before = world.svc.audit_count()
    r = world.svc.client.request(method, url, **kwargs)
    want = expected[i]
    if want == 0:  # posting a need: 201, or 409 when the firm is eligible for nothing
        assert r.status_code in (201, 409), r.text
    else:
        assert r.status_code == want, f"{name} as {caller}: {r.status_code} {r.text[:200]}"
    if r.status_code in (401, 403):
        assert r.headers["content-type"].startswith("application/problem+json")
        assert world.svc.audit_count() == before  # a refusal records no access and leaks nothing
        assert "frozen" not in r.text and "score" not in r.json().get("detail", "")
