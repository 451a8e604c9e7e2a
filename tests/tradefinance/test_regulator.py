"""Regulator aggregates and the measure-19 simulation."""

from __future__ import annotations

import pytest
from kx_firms import GRADES, random_firms

from tradefinance.pricing import load_pricing_config
from tradefinance.products import load_products
from tradefinance.regulator import (
    coverage_summary,
    eligibility_shares,
    grade_distribution,
    measure19,
    measure19_sweep,
)
from tradefinance.rules import evaluate_rules

CATALOG = load_products(grades=GRADES)
CFG = load_pricing_config()
FIRMS = random_firms(500, seed=21)
PRODUCT = "sinosure_steci_comprehensive"


def test_grade_distribution_counts_every_firm_in_scale_order() -> None:
    dist = grade_distribution(FIRMS["grade"], GRADES)
    assert [d["grade"] for d in dist] == GRADES
    assert sum(d["count"] for d in dist) == len(FIRMS)
    assert sum(d["share"] for d in dist) == pytest.approx(1.0)
    assert dist[0]["count"] == int((FIRMS["grade"] == GRADES[0]).sum())
    with pytest.raises(ValueError, match="master scale"):
        grade_distribution(FIRMS["grade"].replace(GRADES[0], "Z"), GRADES)


def test_eligibility_shares_match_row_by_row_evaluation() -> None:
    shares = {s["product_id"]: s for s in eligibility_shares(FIRMS, CATALOG, GRADES)}
    assert set(shares) == {p.id for p in CATALOG}
    for p in CATALOG:
        by_rows = sum(
            all(t.passed for t in evaluate_rules(p.rules, FIRMS.iloc[i].to_dict(), GRADES))
            for i in range(len(FIRMS))
        )
        assert shares[p.id]["eligible"] == by_rows, p.id
        if p.policy_assignment:
            assert shares[p.id]["eligible_with_policy"] >= shares[p.id]["eligible"]


def test_lowering_the_grade_floor_covers_more_firms_and_raises_expected_loss() -> None:
    base = measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES)
    assert base["gained_firms"] == 0 and base["expected_loss_change_usd"] == pytest.approx(0.0)
    loose = measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, min_grade=GRADES[-1])
    assert (
        loose["scenario"]["covered_firms"]
        == base["baseline"]["covered_firms"] + loose["gained_firms"]
    )
    assert loose["gained_firms"] > 0 and loose["lost_firms"] == 0
    assert loose["expected_loss_change_usd"] > 0
    assert sum(loose["gained_by_grade"].values()) == loose["gained_firms"]
    # Newly covered firms are the worse grades only.
    floor = GRADES.index(next(r.value for r in CATALOG[PRODUCT].rules if r.field == "grade"))
    assert all(GRADES.index(g) > floor for g in loose["gained_by_grade"])
    # Expected loss rate rises: the firms added are riskier.
    assert loose["scenario"]["expected_loss_rate"] >= base["baseline"]["expected_loss_rate"]
    for u in loose["financing_unlocked"]:
        assert u["scenario"] >= u["baseline"]


def test_expected_loss_by_hand_and_cover_scales_it() -> None:
    r = measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, cover=0.95)
    s = CFG.simulation
    from tradefinance.rules import eligible_mask

    mask = eligible_mask(CATALOG[PRODUCT], FIRMS, GRADES)
    el = 0.0
    for _, f in FIRMS[mask].iterrows():
        el += (
            f["exports_12m_usd"]
            * s.insurable_share
            * 0.95
            * (s.buyer_loss_rate + f["pd"] * s.exporter_loss_share)
        )
    assert r["scenario"]["expected_loss_usd"] == pytest.approx(el)
    assert r["gained_firms"] == 0
    ratio = r["scenario"]["expected_loss_usd"] / r["baseline"]["expected_loss_usd"]
    assert ratio == pytest.approx(0.95 / CATALOG[PRODUCT].insurance.cover_default)


def test_sweep_is_monotone_in_the_grade_floor() -> None:
    sweep = measure19_sweep(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES)
    assert list(sweep["min_grade"]) == GRADES
    assert sweep["covered_firms"].is_monotonic_increasing
    assert sweep["expected_loss_usd"].is_monotonic_increasing


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="product_id"):
        measure19(FIRMS, CATALOG, product_id="pcb_cbec_credit_loan", grades=GRADES)
    with pytest.raises(ValueError, match="min_grade"):
        measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, min_grade="Q")
    with pytest.raises(ValueError, match="cover"):
        measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, cover=1.2)


def test_coverage_summary() -> None:
    s = coverage_summary(FIRMS)
    assert s["firms"] == len(FIRMS)
    assert s["mean_pd"] == pytest.approx(FIRMS["pd"].mean())
    assert 0 <= s["insured_share"] <= 1
