"""The applications domain without HTTP: every state transition allowed and refused, terms,
notices, outcome rows and labels, statistics, the effective catalog.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tradefinance.applications import (
    ACTOR,
    FINAL,
    TRANSITIONS,
    Action,
    DecisionError,
    Status,
    TransitionError,
    adverse_action_notice,
    allowed_actions,
    canonical,
    check_terms,
    digest,
    load_config,
    next_status,
)

ALL = [(s, a) for s in Status for a in Action]


@pytest.mark.parametrize(("state", "action"), ALL, ids=[f"{s.value}-{a.value}" for s, a in ALL])
def test_every_transition_is_allowed_or_refused_with_the_allowed_ones(
    state: Status, action: Action
) -> None:
    if (state, action) in TRANSITIONS:
        assert next_status(state, action) == TRANSITIONS[(state, action)]
        assert action.value in allowed_actions(state)
        return
    with pytest.raises(TransitionError) as err:
        next_status(state, action)
    assert err.value.allowed == allowed_actions(state)
    assert action.value not in err.value.allowed
    assert f"cannot {action.value}" in str(err.value)


def test_the_machine_has_the_documented_shape() -> None:
    assert {Status.declined, Status.withdrawn, Status.repaid, Status.defaulted} == FINAL
    # Every state is reachable from submitted.
    seen, todo = {Status.submitted}, [Status.submitted]
    while todo:
        s = todo.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src == s and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    assert seen == set(Status)
    assert allowed_actions(Status.info_requested, "firm") == ["respond", "withdraw"]
    assert set(ACTOR) == set(Action)


FIN = {
    "amount": {"min_cny": 100000, "max_cny": 1000000},
    "tenor": {"min_months": 3, "max_months": 12},
    "pricing": {"rate_min": 0.04, "rate_max": 0.12, "lgd": 0.45},
    "insurance": None,
}


def test_terms_are_checked_against_the_frozen_ranges() -> None:
    ok = check_terms(FIN, {"amount_cny": 100000, "rate": 0.12, "tenor_months": 12})
    assert ok == {"amount_cny": 100000.0, "rate": 0.12, "tenor_months": 12}
    with pytest.raises(DecisionError) as err:
        check_terms(FIN, {"amount_cny": 99999, "rate": 0.13, "tenor_months": 2, "fee": 1})
    fields = [p.field for p in err.value.problems]
    assert fields == [
        "body.terms.amount_cny",
        "body.terms.rate",
        "body.terms.tenor_months",
        "body.terms.fee",
    ]
    assert err.value.problems[0].expected == "100000 to 1e+06 CNY"


def test_a_notice_cites_only_reasons_of_the_application() -> None:
    cfg = load_config()
    frozen = {
        "product": {
            "id": "p",
            "name_en": "Loan",
            "name_zh": "贷款",
            "provider": {"name_en": "Bank", "name_zh": "银行"},
        },
        "score": {"reasons": [{"code": "R007", "text_en": "High refunds", "text_zh": "退款率高"}]},
        "match": {
            "trace": [{"rule": "grade >= BB", "field": "grade", "pass": False, "actual": "B"}]
        },
    }
    notice = adverse_action_notice(frozen, ["model:R007", "rule:grade"], cfg, "call us")
    assert "退款率高" in notice["zh"] and "High refunds" in notice["en"]
    assert "grade >= BB" in notice["en"] and "call us" in notice["zh"]
    with pytest.raises(DecisionError):
        adverse_action_notice(frozen, ["model:R008"], cfg)
    with pytest.raises(DecisionError):
        adverse_action_notice(frozen, [], cfg)


def test_canonical_records_hash_the_same_whatever_the_key_order() -> None:
    a, b = {"x": 1, "y": [1.5, float("nan")]}, {"y": [1.5, None], "x": 1}
    assert canonical(a) == canonical(b) and digest(canonical(a)) == digest(canonical(b))


def test_outcome_rows_are_checked_and_labelled() -> None:
    from tradefinance.outcomes import AppState, apply_outcomes, label_of

    cfg = load_config()
    apps = {1: AppState(Status.approved, date(2024, 1, 1), 500000.0)}
    rows = [
        {"application_id": "1", "event": "repayment", "date": "2024-02-01", "status": "current"},
        {"application_id": "1", "event": "disbursement", "date": "2023-12-01", "amount_cny": "100"},
        {
            "application_id": "1",
            "event": "disbursement",
            "date": "2024-01-10",
            "amount_cny": "400000",
        },
        {"application_id": "1", "event": "repayment", "date": "2024-01-05", "status": "current"},
        {
            "application_id": "1",
            "event": "repayment",
            "date": "2024-06-30",
            "days_past_due": "1.5",
            "status": "late",
        },
        {"application_id": "2", "event": "repayment", "date": "2024-06-30", "status": "late"},
        {
            "application_id": "1",
            "event": "repayment",
            "date": "2024-07-31",
            "days_past_due": "91",
            "status": "late",
        },
        {"application_id": "1", "event": "repayment", "date": "2099-01-01", "status": "weird"},
    ]
    report = apply_outcomes(rows, apps, cfg, date(2025, 1, 1))
    reasons = [q["_reason"] for q in report.quarantined]
    assert [q["_row"] for q in report.quarantined] == [0, 1, 3, 4, 5, 7]
    assert reasons[0].startswith("event: state") and reasons[1].startswith("date: range")
    assert "disbursement 2024-01-10" in reasons[2] and reasons[3].startswith("days_past_due: type")
    assert reasons[4].startswith("application_id: reference") and "status: allowed" in reasons[5]
    assert apps[1].status == Status.defaulted  # 91 days past due is the default event
    assert report.summary()["read"] == 8 and report.summary()["accepted"] == 2
    d = date(2024, 1, 10)
    assert label_of(d, [(date(2024, 7, 31), 91, "late")], cfg, date(2024, 8, 1)) == 1
    assert (
        label_of(d, [(date(2025, 3, 1), 120, "late")], cfg, date(2025, 6, 1)) == 0
    )  # after 12 months
    assert label_of(d, [(date(2024, 5, 1), 0, "current")], cfg, date(2024, 8, 1)) is None
    assert label_of(d, [(date(2024, 5, 1), 0, "repaid")], cfg, date(2024, 8, 1)) == 0


def test_statistics_are_grouped_and_timed() -> None:
    from tradefinance.application_stats import application_statistics

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "status": "approved",
            "grade": "BB",
            "product_kind": "credit_loan",
            "created_at": t0,
            "decided_at": t0 + timedelta(hours=10),
            "approved_amount_cny": 1e5,
            "qualified_via_bundle": False,
        },
        {
            "status": "declined",
            "grade": "B",
            "product_kind": "credit_loan",
            "created_at": t0,
            "decided_at": t0 + timedelta(hours=100),
            "qualified_via_bundle": False,
        },
        {
            "status": "disbursed",
            "grade": "B",
            "product_kind": "policy_financing",
            "created_at": t0,
            "decided_at": t0 + timedelta(hours=20),
            "approved_amount_cny": 2e5,
            "disbursed_amount_cny": 2e5,
            "qualified_via_bundle": True,
        },
        {
            "status": "submitted",
            "grade": "B",
            "product_kind": "credit_loan",
            "created_at": t0,
            "decided_at": None,
            "qualified_via_bundle": False,
        },
    ]
    s = application_statistics(
        rows,
        grades=["BB", "B"],
        kinds=["credit_loan", "policy_financing"],
        service_level_hours=72,
        now=t0 + timedelta(days=5),
    )
    assert s["totals"]["approval_rate"] == pytest.approx(2 / 3)
    assert [g["grade"] for g in s["by_grade"]] == ["BB", "B"] and s["by_grade"][1][
        "applications"
    ] == 3
    assert s["time_to_decision_hours"]["median"] == 20
    assert s["service_level"]["within"] == 2 and s["service_level"]["pending_overdue"] == 1
    assert s["bundle_only"]["approved_amount_cny"] == 2e5 and s["bundle_only"]["applications"] == 1


def test_the_effective_catalog_follows_versions_and_dates() -> None:
    from tradefinance.product_versions import Version, effective_catalog
    from tradefinance.products import load_products

    seed = load_products()
    t = datetime(2026, 6, 1, tzinfo=UTC)
    spec = seed["pcb_cbec_credit_loan"].model_dump(mode="json")
    renamed = {**spec, "name_en": "Renamed"}
    versions = [
        Version("pcb_cbec_credit_loan", 1, "Pengcheng Commercial Bank", renamed, t),
        Version(
            "pcb_cbec_credit_loan", 2, "Pengcheng Commercial Bank", None, t + timedelta(days=10)
        ),
        Version("new_loan", 1, "X", {**spec, "id": "new_loan"}, t),
    ]
    assert effective_catalog(seed, [], t) is seed
    before = effective_catalog(seed, versions, t - timedelta(days=1))
    assert before["pcb_cbec_credit_loan"].name_en == seed["pcb_cbec_credit_loan"].name_en
    assert "new_loan" not in before
    during = effective_catalog(seed, versions, t + timedelta(days=1))
    assert during["pcb_cbec_credit_loan"].name_en == "Renamed" and "new_loan" in during
    after = effective_catalog(seed, versions, t + timedelta(days=11))
    assert "pcb_cbec_credit_loan" not in after and len(after) == len(seed)


def test_freeze_marks_firms_that_qualified_only_through_a_bundle() -> None:
    from tradefinance.applications import freeze
    from tradefinance.products import load_products

    product = load_products()["pcb_policy_financing"]
    common = {
        "application_id": 7,
        "frozen_at": datetime(2026, 1, 1, tzinfo=UTC),
        "product": product,
        "product_version": 0,
        "product_effective_from": None,
        "need": {"amount_cny": 1e5},
        "score": {"model_version": "m1", "as_of": date(2025, 12, 1), "pd": float("nan")},
        "explanation": [],
        "features": {"x": 1.0},
        "catalog_version": "c",
        "snapshot_source": "s",
    }
    bundle = {"financing_id": product.id, "eligible_unbundled": False}
    only = freeze(**common, match_entry={"eligible": False}, bundles=[bundle])
    assert (
        only["qualified_via_bundle"]
        and only["score"]["pd"] is None
        and only["as_of"] == "2025-12-01"
    )
    alone = freeze(**common, match_entry={"eligible": True}, bundles=[bundle])
    assert not alone["qualified_via_bundle"]
    other = freeze(
        **common, match_entry={"eligible": False}, bundles=[{**bundle, "financing_id": "x"}]
    )
    assert not other["qualified_via_bundle"]
    assert only["product"]["id"] == product.id and only["product"]["version"] == 0
