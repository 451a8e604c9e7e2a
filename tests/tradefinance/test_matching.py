"""Matching: rule traces agree with hand evaluation; limits, prices, bundles and recourse."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kx_firms import GRADES, random_firms
from pydantic import ValidationError

from tradefinance.matching import Need, indicative_limit_cny, match
from tradefinance.pricing import load_pricing_config
from tradefinance.products import load_products
from tradefinance.rules import eligible_mask, evaluate_rules, rule_mask

CATALOG = load_products(grades=GRADES)
CFG = load_pricing_config()
NEED = Need(amount_cny=800_000, purpose="working_capital", tenor_months=6)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def by_hand(field: str, op: str, value: Any, actual: Any, if_missing: str) -> bool:
    """An independent, deliberately plain evaluation of one rule."""
    if _missing(actual):
        return if_missing == "pass"
    if field == "grade" and op not in ("in", "not_in", "==", "!="):
        better_or_equal = GRADES.index(actual) <= GRADES.index(value)
        return better_or_equal if op == ">=" else GRADES.index(actual) >= GRADES.index(value)
    if op == "in":
        return str(actual) in [str(v) for v in value] or actual in value
    if op == "not_in":
        return not (str(actual) in [str(v) for v in value] or actual in value)
    a, b = (float(actual), float(value)) if not isinstance(value, str) else (actual, value)
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "==": a == b, "!=": a != b}[op]


def _row(df: pd.DataFrame, i: int) -> dict[str, Any]:
    return {
        k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in df.iloc[i].items()
    }


def test_traces_agree_with_rules_evaluated_by_hand() -> None:
    firms = random_firms(300, seed=1)
    checked = 0
    for i in range(len(firms)):
        row = _row(firms, i)
        for product in CATALOG:
            trace = evaluate_rules(product.rules, row, GRADES)
            assert [t.field for t in trace] == [r.field for r in product.rules]
            for rule, t in zip(product.rules, trace, strict=True):
                expected = by_hand(
                    rule.field, rule.op, rule.value, row.get(rule.field), rule.if_missing
                )
                assert t.passed == expected, (product.id, rule.text, row.get(rule.field))
                assert t.required == rule.value
                checked += 1
    assert checked > 4000


def test_vectorised_rules_agree_with_row_by_row() -> None:
    firms = random_firms(200, seed=2)
    for product in CATALOG:
        for rule in product.rules:
            mask = rule_mask(rule, firms, GRADES)
            rows = [
                evaluate_rules([rule], _row(firms, i), GRADES)[0].passed for i in range(len(firms))
            ]
            assert mask.tolist() == rows, rule.text
        both = eligible_mask(product, firms, GRADES)
        assert both.any() or product.id, product.id  # some products may exclude everyone


def test_match_lists_every_product_with_trace_price_and_limit() -> None:
    firms = random_firms(50, seed=3)
    row = _row(firms, int(np.argmin(firms["pd"])))
    res = match(row, NEED, CATALOG, grades=GRADES).as_dict()
    assert {m["product_id"] for m in res["financing"]} == {p.id for p in CATALOG.financing}
    assert {m["product_id"] for m in res["insurance"]} == {p.id for p in CATALOG.insurance}
    for m in res["financing"]:
        assert m["eligible"] == all(t["pass"] for t in m["trace"])
        p = CATALOG[m["product_id"]]
        assert p.pricing.rate_min <= m["price"]["rate"] <= p.pricing.rate_max
        assert 0 <= m["limit_cny"] <= p.amount.max_cny
        assert (m["recourse"] is None) == m["eligible"]
    # Ranked: eligible first, then fewer failed rules.
    keys = [(not m["eligible"], m["failed"]) for m in res["financing"]]
    assert keys == sorted(keys)


def test_a_loan_that_covers_the_need_ranks_before_one_that_does_not() -> None:
    firms = random_firms(60, seed=5)
    mixed = 0
    for i, amount in itertools.product(range(len(firms)), (300_000, 800_000, 2_000_000)):
        need = Need(amount_cny=amount, purpose="working_capital", tenor_months=6)
        ranked = match(_row(firms, i), need, CATALOG, grades=GRADES).financing
        eligible = [m for m in ranked if m["eligible"]]
        assert all(m["covers_need"] == (m["limit_cny"] >= amount) for m in eligible)
        flags = [m["covers_need"] for m in eligible]
        assert flags == sorted(flags, reverse=True), [m["product_id"] for m in eligible]
        mixed += len(set(flags)) == 2
    assert mixed > 0  # some firm had both kinds, so the order was really tested


def test_need_checks_appear_in_the_trace() -> None:
    row = _row(random_firms(5, seed=4), 0)
    need = Need(amount_cny=50_000_000, purpose="yacht", tenor_months=60)
    res = match(row, need, CATALOG, grades=GRADES)
    for m in res.financing:
        need_rows = [t for t in m["trace"] if t["source"] == "need"]
        assert {t["field"] for t in need_rows} == {
            "need.purpose",
            "need.amount_cny",
            "need.tenor_months",
        }
        assert not m["eligible"]


def test_loan_price_rises_with_pd_in_matching() -> None:
    base = _row(random_firms(5, seed=5), 0)
    rates = []
    for pd_ in (0.005, 0.01, 0.02, 0.05, 0.1):
        row = {**base, "pd": pd_, "grade": GRADES[0]}
        res = match(row, NEED, CATALOG, grades=GRADES)
        rates.append({m["product_id"]: m["price"]["raw_rate"] for m in res.financing})
    for pid in rates[0]:
        seq = [r[pid] for r in rates]
        assert all(a < b for a, b in itertools.pairwise(seq)), (pid, seq)


def test_limit_grows_with_trade_and_shrinks_with_pd() -> None:
    p = CATALOG["pcb_cbec_credit_loan"]
    row = {"exports_12m_usd": 1_200_000.0}
    small = indicative_limit_cny(p, {"exports_12m_usd": 300_000.0}, 0.01, CFG)
    assert small < indicative_limit_cny(p, row, 0.01, CFG)
    assert indicative_limit_cny(p, row, 0.05, CFG) < indicative_limit_cny(p, row, 0.01, CFG)
    assert indicative_limit_cny(p, row, 0.5, CFG) == 0
    assert indicative_limit_cny(p, {"exports_12m_usd": None}, 0.01, CFG) == 0


def _good_firm(**kw: Any) -> dict[str, Any]:
    row = _row(random_firms(1, seed=6), 0)
    row.update(
        pd=0.015,
        grade="BB",
        firm_age_months=60,
        exports_12m_usd=1_500_000.0,
        dishonest_listed=0,
        fx_class="A",
        insured=0,
        tax_grade="A",
        max_dpd_12m=0,
    )
    row.update(kw)
    return row


def test_bundle_is_cheaper_than_unbundled_and_unlocks_policy_financing() -> None:
    row = _good_firm()
    res = match(row, NEED, CATALOG, grades=GRADES)
    fin = {m["product_id"]: m for m in res.financing}
    # Without a policy the firm fails policy financing on "insured == 1" only.
    failed = [t["field"] for t in fin["pcb_policy_financing"]["trace"] if not t["pass"]]
    assert failed == ["insured"]
    assert res.bundles, "expected at least one bundle"
    ids = {(b["financing_id"], b["insurance_id"]) for b in res.bundles}
    assert ("pcb_policy_financing", "sinosure_steci_comprehensive") in ids
    for b in res.bundles:
        assert b["lgd_bundled"] < b["lgd_unbundled"]
        assert b["rate_bundled"] < b["rate_unbundled"]
        assert b["interest_bundled_cny"] < b["interest_unbundled_cny"]
        assert all(t["pass"] for t in b["trace"])
        has_insured_rule = any(r.field == "insured" for r in CATALOG[b["financing_id"]].rules)
        assert any(t["source"] == "bundle" for t in b["trace"]) == has_insured_rule


def test_no_bundle_when_the_firm_cannot_get_the_policy() -> None:
    row = _good_firm(dishonest_listed=1)
    assert match(row, NEED, CATALOG, grades=GRADES).bundles == []


def test_recourse_hints_and_plan_for_ineligible_products() -> None:
    row = _good_firm(fx_receipt_ratio_12m=0.5, grade="B", pd=0.04)
    calls: list[str] = []

    def plan(product, trace):  # stands in for training.recourse.find_recourse
        calls.append(product.id)
        return {"failed": [t.field for t in trace if not t.passed]}

    res = match(
        row, NEED, CATALOG, grades=GRADES, recourse=plan, actionable={"fx_receipt_ratio_12m"}
    )
    sunshine = next(m for m in res.financing if m["product_id"] == "pcb_sunshine_compliance_loan")
    assert not sunshine["eligible"]
    hints = {h["field"]: h for h in sunshine["recourse"]["hints"]}
    assert hints["fx_receipt_ratio_12m"]["change"] == "increase"
    assert hints["fx_receipt_ratio_12m"]["actionable"] is True
    assert hints["grade"]["change"] == "improve_grade"
    assert "pcb_sunshine_compliance_loan" in calls
    assert "fx_receipt_ratio_12m" in sunshine["recourse"]["plan"]["failed"]
    assert all(calls.count(m["product_id"]) == (0 if m["eligible"] else 1) for m in res.financing)


def test_need_is_validated() -> None:
    with pytest.raises(ValidationError, match="amount_cny"):
        Need(amount_cny=-1, purpose="x", tenor_months=3)
    with pytest.raises(ValidationError, match="extra"):
        Need(amount_cny=1, purpose="x", tenor_months=3, colour="red")
