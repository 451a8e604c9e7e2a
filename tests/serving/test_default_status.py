# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""Firms in default at the as-of date are served grade D, never an ordinary model grade.

The shared small world's snapshot has firms meeting every rule of
``features/config/default_status.yaml``; a small constructed snapshot pins one rule per firm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kx_browser import require_chromium
from kx_service import ServedWorld, served_world  # noqa: F401  (fixture)

from features.default_status import DefaultStatusError, default_flags, load_default_status
from serving.state import build
from tradefinance.products import Rule
from tradefinance.rules import evaluate_rules, rule_passes

NEED = {"amount_cny": 500000, "purpose": "working_capital", "tenor_months": 6}
QUOTE = {
    "buyer_country": "USA",
    "buyer_grade": "B",
    "terms": "O/A",
    "credit_days": 60,
    "amount_usd": 50000,
}
OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}


def _rule_hits(frame: pd.DataFrame) -> pd.DataFrame:
    """Per firm and rule of the shipped configuration: whether the rule is met (test's own eval)."""
    status = load_default_status()
    return pd.DataFrame(
        {
            r.feature: OPS[r.op](pd.to_numeric(frame[r.feature]).fillna(-np.inf), r.threshold)
            for r in status.rules
        },
        index=frame.index,
    )


@pytest.fixture(scope="module")
def client(served_world: ServedWorld) -> Any:
    with TestClient(served_world.app()) as c:
        yield c


@pytest.fixture(scope="module")
def defaulted(served_world: ServedWorld) -> dict[str, str]:
    """One firm with a valid USCC per rule (meeting that rule), with an enterprise key each."""
    from features.uscc import validate
    from serving.auth import create_key
    from serving.db import Database

    hits = _rule_hits(served_world.loaded.snapshot)
    valid = [c for c in hits.index if validate(c).valid]
    chosen = {rule: str(hits.loc[valid].index[hits.loc[valid, rule]][0]) for rule in hits}
    db = Database(served_world.settings.database_url)
    keys = {}
    with db.session() as s:
        for rule, firm in chosen.items():
            keys[rule], _ = create_key(s, "enterprise", f"firm in default ({rule})", firm)
    db.dispose()
    return {rule: f"{chosen[rule]}|{keys[rule]}" for rule in chosen}


def _firm_key(entry: str) -> tuple[str, dict[str, str]]:
    firm, key = entry.split("|")
    return firm, {"X-API-Key": key}


def test_shipped_rules_use_catalog_features_and_match_the_label() -> None:
    from features.catalog import load_catalog
    from features.dataset import DEFAULT_DPD

    status = load_default_status()
    assert status.grade == "D" and status.supervision_class == "D"
    names = set(load_catalog().names)
    by_feature = {r.feature: r for r in status.rules}
    assert set(by_feature) <= names
    assert by_feature["current_dpd"].threshold == DEFAULT_DPD
    assert by_feature["enforcement_open"].threshold == 1
    assert by_feature["dishonest_listed"].threshold == 1


def test_bad_rules_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "status.yaml"
    bad.write_text("rules:\n  - {feature: current_dpd, op: '~', threshold: 90}\n")
    with pytest.raises(DefaultStatusError, match=str(bad)):
        load_default_status(bad)
    with pytest.raises(DefaultStatusError, match="does not exist"):
        load_default_status(tmp_path / "missing.yaml")


def test_flags_give_each_triggered_rule_with_its_value() -> None:
    status = load_default_status()
    frame = pd.DataFrame(
        {
            "current_dpd": [0.0, 120.0, 89.0, np.nan, 95.0],
            "max_dpd_12m": [0.0, 120.0, 89.0, np.nan, 95.0],
            "enforcement_open": [0.0, 0.0, 0.0, np.nan, 2.0],
            "dishonest_listed": [0.0, 0.0, 0.0, np.nan, 1.0],
        }
    )
    flagged, reasons = default_flags(frame, status)
    assert flagged.tolist() == [False, True, False, False, True]
    assert reasons[0] == reasons[2] == reasons[3] == []
    assert [r["feature"] for r in reasons[1]] == ["current_dpd", "max_dpd_12m"]
    assert {r["feature"]: r["value"] for r in reasons[4]} == {
        "current_dpd": 95.0,
        "max_dpd_12m": 95.0,
        "enforcement_open": 2.0,
        "dishonest_listed": 1.0,
    }
    assert all(r["text_en"] and r["text_zh"] for r in reasons[4])
    with pytest.raises(DefaultStatusError, match="current_dpd"):
        default_flags(frame.drop(columns="current_dpd"), status)


def test_served_world_flags_exactly_the_firms_meeting_a_rule(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    hits = _rule_hits(loaded.snapshot)
    assert hits.sum().min() > 0, "the shared world should have firms meeting every rule"
    expected = hits.any(axis=1)
    s = loaded.scores
    assert s["in_default"].tolist() == expected.tolist()
    d = s[expected]
    assert (d["grade"] == "D").all() and (d["supervision_class"] == "D").all()
    assert (d["pd"] == 1.0).all() and d["score"].isna().all()
    # The model's own outputs are kept; performing firms are served them unchanged.
    assert set(d["model_grade"]) <= set(loaded.model.master_scale.grades)
    p = s[~expected]
    assert (p["pd"] == p["model_pd"]).all() and (p["grade"] == p["model_grade"]).all()
    fresh = loaded.model.score(loaded.snapshot.loc[p.index[:20]].reset_index(drop=True))
    assert np.allclose(fresh["pd"].to_numpy(), p["pd"].iloc[:20].to_numpy())
    assert fresh["grade"].tolist() == p["grade"].iloc[:20].tolist()
    assert loaded.grades == [*loaded.model.master_scale.grades, "D"]


def test_constructed_snapshot_one_rule_per_firm(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    performing = loaded.scores.index[~loaded.scores["in_default"]][:12]
    snap = loaded.snapshot.loc[performing].reset_index(drop=True)
    setting = {
        "current_dpd": {"current_dpd": 120, "max_dpd_12m": 120},
        "max_dpd_12m": {"current_dpd": 0, "max_dpd_12m": 95},
        "enforcement_open": {"enforcement_open": 2},
        "dishonest_listed": {"dishonest_listed": 1},
    }
    for i, values in enumerate(setting.values()):
        for feature, value in values.items():
            snap.loc[i, feature] = value
    bundle = build(loaded.model, snap, catalog=loaded.catalog)
    codes = snap["usc_code"].tolist()
    for i, rule in enumerate(setting):
        pay = bundle.score_payload(codes[i])
        assert pay["in_default"] is True and pay["grade"] == "D" and pay["pd"] == 1.0
        assert pay["score"] is None and pay["supervision_class"] == "D"
        features = [r["feature"] for r in pay["default_reasons"]]
        assert rule in features
        if rule != "current_dpd":
            assert features == [rule]
        assert pay["model_grade"] in loaded.model.master_scale.grades
    for code in codes[4:]:
        pay = bundle.score_payload(code)
        assert pay["in_default"] is False and pay["default_reasons"] == []
        assert pay["grade"] == loaded.score_payload(code)["grade"]


def test_batch_scoring_grades_firms_in_default_as_the_api(served_world: ServedWorld) -> None:
    """`kuaxin score-batch` and the service give one answer per firm (one in-default rule)."""
    from training.batch import score_batch

    loaded = served_world.loaded
    batch = score_batch(loaded.model, loaded.snapshot, chunk_size=250).set_index("usc_code")
    served = loaded.scores.loc[batch.index]
    assert batch["in_default"].any()
    assert (batch["in_default"] == served["in_default"].astype(bool)).all()
    assert (batch["grade"] == served["grade"].astype(str)).all()
    assert (batch["supervision_class"] == served["supervision_class"].astype(str)).all()
    np.testing.assert_allclose(batch["pd"], served["pd"].astype(float), rtol=1e-12)
    assert batch.loc[batch["in_default"], "score"].isna().all()


def test_grade_d_ranks_below_c(served_world: ServedWorld) -> None:
    grades = served_world.loaded.grades
    assert grades.index("D") == grades.index("C") + 1
    assert not rule_passes(Rule(field="grade", op=">=", value="C"), "D", grades)
    assert rule_passes(Rule(field="grade", op="<=", value="C"), "D", grades)
    row = {"grade": "D", "pd": 1.0, "in_default": True}
    trace = evaluate_rules([], row, grades)
    assert [(t.rule, t.required, t.actual, t.passed) for t in trace] == [
        ("not in default", "no", "yes", False)
    ]
    assert evaluate_rules([], {"grade": "BB", "in_default": False}, grades) == []


def test_score_answer_of_firms_in_default(
    client: TestClient, served_world: ServedWorld, defaulted: dict[str, str]
) -> None:
    for rule, entry in defaulted.items():
        firm, h = _firm_key(entry)
        r = client.get(f"/v1/firms/{firm}/score", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["in_default"] is True and body["grade"] == "D" and body["pd"] == 1.0
        assert body["score"] is None and body["supervision_class"] == "D"
        reason = {x["feature"]: x for x in body["default_reasons"]}[rule]
        assert reason["value"] == served_world.loaded.snapshot.at[firm, rule]
        assert reason["text_en"] and reason["text_zh"]
        assert body["model_grade"] in served_world.loaded.model.master_scale.grades
    own = client.get(
        f"/v1/firms/{served_world.firm}/score", headers=served_world.headers("enterprise")
    ).json()
    assert own["in_default"] is False and own["default_reasons"] == []
    assert own["grade"] in served_world.loaded.model.master_scale.grades
    assert own["score"] is not None and own["pd"] == own["model_pd"]


def test_matches_fail_every_product_with_the_default_row(
    client: TestClient, defaulted: dict[str, str]
) -> None:
    firm, h = _firm_key(defaulted["enforcement_open"])
    r = client.post(f"/v1/firms/{firm}/matches", json=NEED, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["in_default"] is True and body["grade"] == "D"
    products = body["financing"] + body["insurance"]
    assert products and body["bundles"] == []
    for m in products:
        assert m["eligible"] is False
        first = m["trace"][0]
        assert (first["rule"], first["required"], first["actual"], first["pass"]) == (
            "not in default",
            "no",
            "yes",
            False,
        )
        assert m["recourse"]["plan"] is None
        assert m["recourse"]["hints"][0]["change"] == "cure_default"
    assert all(m["offer_cny"] == 0 and m["price"] is None for m in body["financing"])


def test_quote_declines_a_firm_in_default(client: TestClient, defaulted: dict[str, str]) -> None:
    firm, h = _firm_key(defaulted["current_dpd"])
    q = client.post(f"/v1/firms/{firm}/quote", json=QUOTE, headers=h)
    assert q.status_code == 200, q.text
    body = q.json()["quote"]
    assert body["decision"] == "declined" and body["premium_usd"] is None
    declines = {d["code"]: d for d in body["declines"]}
    assert declines["in_default"]["message_en"] == "exporter in default"


def test_whatif_recourse_and_price_refuse_with_409(
    client: TestClient, served_world: ServedWorld, defaulted: dict[str, str]
) -> None:
    firm, h = _firm_key(defaulted["dishonest_listed"])
    feature = next(iter(served_world.loaded.catalog.actionable))
    calls = [
        ("what-if", {"changes": {feature: 0}}),
        ("recourse", {"target_grade": "BB"}),
        ("loan-price", {"tenor_months": 12}),
    ]
    for path, body in calls:
        r = client.post(f"/v1/firms/{firm}/{path}", json=body, headers=h)
        assert r.status_code == 409, (path, r.text)
        detail = r.json()["detail"]
        assert "is in default" in detail and "dishonest_listed" in detail
        assert "cure the default (" in detail


def test_regulator_counts_firms_in_default_under_d(
    client: TestClient, served_world: ServedWorld
) -> None:
    r = client.get("/v1/regulator/overview", headers=served_world.headers("regulator"))
    assert r.status_code == 200, r.text
    body = r.json()
    n_default = int(served_world.loaded.scores["in_default"].sum())
    grades = body["grades"]
    assert grades[-1]["grade"] == "D" and grades[-1]["count"] == n_default
    assert sum(g["count"] for g in grades) == len(served_world.loaded.position)
    assert body["summary"]["in_default_firms"] == n_default
    assert body["summary"]["mean_pd"] < 1.0


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_portal_shows_a_red_in_default_badge(
    served_world: ServedWorld, defaulted: dict[str, str]
) -> None:
    import socket
    import threading
    import time

    import uvicorn

    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    _firm, h = _firm_key(defaulted["enforcement_open"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(served_world.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            page = b.new_page()
            page.goto(f"http://127.0.0.1:{port}/portal/?lang=en")
            page.get_by_label("Firm API key").fill(h["X-API-Key"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/portal/grade")
            badge = page.locator("#grade-value .badge.default")
            expect(badge).to_have_text("in default")
            color = badge.evaluate("e => getComputedStyle(e).backgroundColor")
            assert color == "rgb(164, 22, 26)"
            assert page.locator("#default-box").is_visible()
            assert page.locator("#default-reasons li").count() >= 1
            assert page.locator("#score-value").inner_text() == "–"
            b.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_settings_point_to_another_rules_file(
    svc_settings_kwargs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.settings import Settings
    from serving.state import ServingState

    only = tmp_path / "only_dishonest.yaml"
    only.write_text(
        "grade: D\nsupervision_class: D\nrules:\n"
        "  - {feature: dishonest_listed, op: '>=', threshold: 1, text_en: listed, text_zh: 失信}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("KUAXIN_DEFAULT_STATUS", str(only))
    loaded = ServingState().load(Settings(database_url="sqlite://", **svc_settings_kwargs))
    listed = pd.to_numeric(loaded.snapshot["dishonest_listed"]).fillna(0) >= 1
    assert loaded.scores["in_default"].tolist() == listed.tolist()
    assert {r["feature"] for rs in loaded.default_reasons for r in rs} == {"dishonest_listed"}
