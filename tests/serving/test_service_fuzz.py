"""Schema-driven fuzzing of the scoring endpoints: odd input never causes a 5xx, and every
refusal is a problem-details body naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def fuzz(module_db_url: str, svc_loaded: Any, svc_firms: Any) -> Any:
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
        key = svc.key("enterprise", "fuzzed firm", svc_firms.a)
        yield svc, {"X-API-Key": key}
        svc.db.dispose()


def _ok_or_problem(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert body["status"] == r.status_code and body["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["refund_rate_6m", "max_dpd_12m", "tax_grade", "dishonest_listed", "industry", "x"]
        ),
        JSON,
        max_size=4,
    )
)
def test_what_if_never_5xx(fuzz: Any, svc_firms: Any, changes: dict) -> None:
    svc, h = fuzz
    r = svc.client.post(f"/v1/firms/{svc_firms.a}/what-if", json={"changes": changes}, headers=h)
    _ok_or_problem(r)
    if r.status_code == 422:
        assert all(e["field"].startswith("body") for e in r.json()["errors"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=JSON)
def test_any_json_body_never_5xx(fuzz: Any, svc_firms: Any, body: Any) -> None:
    svc, h = fuzz
    for path in (
        f"/v1/firms/{svc_firms.a}/recourse",
        "/v1/scores/batch",
        f"/v1/firms/{svc_firms.a}/consents",
    ):
        _ok_or_problem(svc.client.post(path, json=body, headers=h))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXYIOSVZ-", min_size=0, max_size=20))
def test_any_firm_code_never_5xx(fuzz: Any, code: str) -> None:
    svc, h = fuzz
    r = svc.client.get(f"/v1/firms/{code}/score", headers=h)
    _ok_or_problem(r)
    assert r.status_code in (200, 403, 404, 405, 422) or (not code and r.status_code == 404)
