"""What-if and recourse: every result is re-checked by scoring the changed feature vector."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from training.recourse import check_change, find_recourse, grade_goal


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def rescore(loaded: Any, firm: str, changes: dict[str, Any]) -> pd.Series:
    """Score the firm's snapshot row with ``changes`` through the model's public path."""
    row = loaded.snapshot.loc[[firm]].copy()
    for f, v in changes.items():
        if isinstance(row[f].dtype, pd.CategoricalDtype) and v not in row[f].cat.categories:
            row[f] = row[f].cat.add_categories([v])
        row[f] = row[f].astype(object)
        row.loc[firm, f] = v
    return loaded.model.score(row, num_threads=1).iloc[0]


@pytest.fixture()
def svc(make_service: Any, db_url: str) -> Any:
    return make_service(db_url)


def _worse_firms(loaded: Any, target: str, n: int) -> list[str]:
    scale = loaded.model.master_scale
    limit = scale.rank(target)
    # firms in default are served grade D, which is not on the master scale
    ranks = loaded.scores.loc[~loaded.scores["in_default"], "grade"].map(scale.rank)
    cands = ranks[(ranks > limit) & (ranks <= limit + 3)].index
    return [str(c) for c in sorted(cands)[:n]]


@pytest.mark.parametrize(
    "changes",
    [
        {"refund_rate_6m": 0.0},
        {"max_dpd_12m": 0, "current_dpd": 0, "enforcement_open": 0},
        {"dishonest_listed": True, "exports_12m_usd": 2_000_000.0},
        {"tax_grade": "A", "fx_class": "A"},
    ],
)
def test_what_if_matches_rescoring(svc: Any, svc_firms: Any, changes: dict[str, Any]) -> None:
    firm = svc_firms.a
    ent = svc.key("enterprise", "a", firm)
    r = svc.client.post(f"/v1/firms/{firm}/what-if", json={"changes": changes}, headers=h(ent))
    assert r.status_code == 200, r.text
    body = r.json()
    again = rescore(
        svc.loaded, firm, {k: (int(v) if isinstance(v, bool) else v) for k, v in changes.items()}
    )
    assert body["after"]["pd"] == pytest.approx(float(again["pd"]), rel=1e-9)
    assert body["after"]["grade"] == again["grade"]
    assert body["before"]["pd"] == pytest.approx(
        float(svc.loaded.scores.loc[firm, "pd"]), rel=1e-12
    )
    assert [c["feature"] for c in body["changes"]] == list(changes)


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"firm_age_months": 120}, "body.changes.firm_age_months", "one of"),
        ({"no_such_feature": 1}, "body.changes.no_such_feature", "one of"),
        ({"refund_rate_6m": 1.5}, "body.changes.refund_rate_6m", "between 0 and 1"),
        ({"refund_rate_6m": "low"}, "body.changes.refund_rate_6m", "a finite float"),
        ({"max_dpd_12m": 2.5}, "body.changes.max_dpd_12m", "whole number"),
        ({"tax_grade": "AAA"}, "body.changes.tax_grade", "one of A, B, M, C, D"),
    ],
)
def test_what_if_rejects_bad_changes(
    svc: Any, svc_firms: Any, changes: dict, field: str, expected: str
) -> None:
    ent = svc.key("enterprise", "a", svc_firms.a)
    r = svc.client.post(
        f"/v1/firms/{svc_firms.a}/what-if", json={"changes": changes}, headers=h(ent)
    )
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == field and expected in err["expected"]
    assert svc.audit_count() == 0


def _check_plan(loaded: Any, firm: str, plan: Any, goal: Any) -> None:
    catalog = loaded.catalog
    for c in plan.changes:
        spec = catalog[c.feature]
        assert spec.actionable and spec.direction != "none"
        delta = c.after - c.before
        assert delta != 0
        assert math.copysign(1, delta) == (-1 if spec.direction == "increases_risk" else 1)
        assert spec.lower <= c.after <= spec.upper
        steps = delta / spec.step
        assert steps == pytest.approx(round(steps), abs=1e-6) or c.after in (spec.lower, spec.upper)
    changes = {c.feature: c.after for c in plan.changes}
    again = rescore(loaded, firm, changes)
    assert again["pd"] == pytest.approx(plan.after["pd"], rel=1e-9)
    row = {**loaded.snapshot.loc[firm].to_dict(), **changes, **again.to_dict()}
    assert goal(row) == plan.reached


def test_recourse_reaches_the_grade_with_valid_minimal_changes(svc_loaded: Any) -> None:
    target = "BBB"
    firms = _worse_firms(svc_loaded, target, 4)
    assert firms
    goal = grade_goal(svc_loaded.model, target)
    reached = 0
    for firm in firms:
        plan = find_recourse(
            svc_loaded.model,
            svc_loaded.catalog,
            svc_loaded.snapshot.loc[firm],
            goal,
            scales=svc_loaded.scales,
        )
        _check_plan(svc_loaded, firm, plan, goal)
        if plan.reached:
            reached += 1
            assert plan.changes and plan.cost > 0
            # Minimal: undoing any single change loses the goal.
            for c in plan.changes:
                rest = {d.feature: d.after for d in plan.changes if d.feature != c.feature}
                again = rescore(svc_loaded, firm, rest)
                assert not goal({**again.to_dict()}), c.feature
    assert reached >= 1


def test_recourse_generic_goal_and_edge_cases(svc_loaded: Any, svc_firms: Any) -> None:
    reached = 0
    for firm in _worse_firms(svc_loaded, "BBB", 4):
        pd0 = float(svc_loaded.scores.loc[firm, "pd"])

        def lower_pd(r: Any, pd0: float = pd0) -> bool:
            return r["pd"] <= 0.8 * pd0

        plan = find_recourse(
            svc_loaded.model,
            svc_loaded.catalog,
            svc_loaded.snapshot.loc[firm],
            lower_pd,
            scales=svc_loaded.scales,
        )
        _check_plan(svc_loaded, firm, plan, lower_pd)
        reached += plan.reached
    assert reached >= 1
    firm = svc_firms.a
    row = svc_loaded.snapshot.loc[firm]
    score0 = float(svc_loaded.scores.loc[firm, "score"])

    def better(r: Any) -> bool:
        return r["score"] >= score0 + 10

    # Already met: no changes.
    same = grade_goal(svc_loaded.model, str(svc_loaded.scores.loc[firm, "grade"]))
    plan = find_recourse(svc_loaded.model, svc_loaded.catalog, row, same)
    assert plan.already_met and plan.reached and plan.changes == []
    # Impossible: reported as not reached (and still re-checked).
    plan = find_recourse(svc_loaded.model, svc_loaded.catalog, row, lambda r: False, max_steps=3)
    assert not plan.reached and not plan.already_met
    # Only the allowed features move.
    plan = find_recourse(
        svc_loaded.model,
        svc_loaded.catalog,
        row,
        better,
        features=["refund_rate_6m", "max_dpd_12m"],
        max_steps=10,
    )
    assert {c.feature for c in plan.changes} <= {"refund_rate_6m", "max_dpd_12m"}


def test_recourse_endpoint_is_rechecked_by_what_if(svc: Any) -> None:
    firm = _worse_firms(svc.loaded, "BBB", 1)[0]
    ent = svc.key("enterprise", "w", firm)
    r = svc.client.post(f"/v1/firms/{firm}/recourse", json={"target_grade": "BBB"}, headers=h(ent))
    assert r.status_code == 200, r.text
    plan = r.json()
    assert not plan["already_met"]
    if plan["reached"]:
        changes = {c["feature"]: c["after"] for c in plan["changes"]}
        w = svc.client.post(
            f"/v1/firms/{firm}/what-if", json={"changes": changes}, headers=h(ent)
        ).json()
        assert w["after"]["grade"] == plan["after"]["grade"]
        assert svc.loaded.model.master_scale.rank(
            w["after"]["grade"]
        ) <= svc.loaded.model.master_scale.rank("BBB")
    assert svc.audit_count() == (2 if plan["reached"] else 1)


def test_check_change_coerces(svc_loaded: Any) -> None:
    cat = svc_loaded.catalog
    assert check_change(cat["max_dpd_12m"], 3.0) == 3 and isinstance(
        check_change(cat["max_dpd_12m"], 3.0), int
    )
    assert check_change(cat["dishonest_listed"], False) == 0
    assert check_change(cat["refund_rate_6m"], 0) == 0.0
