"""Measure 19 with the tail: VaR/ES, claims ratio, headroom, and a monotone loosening curve."""

from __future__ import annotations

import pytest
from kx_firms import GRADES, random_firms

from tradefinance.products import load_products
from tradefinance.regulator import measure19, measure19_curve, measure19_tail

CATALOG = load_products(grades=GRADES)
FIRMS = random_firms(400, seed=21)
PRODUCT = "sinosure_steci_comprehensive"


def test_no_loosening_changes_nothing_and_matches_measure19() -> None:
    r = measure19_tail(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, scenarios=1000)
    plain = measure19(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES)
    assert r["scenario"]["var_usd"] == r["baseline"]["var_usd"]
    assert r["extra_cover_under_same_var_usd"] == pytest.approx(0.0, abs=1e-3)
    # The tail's positions carry exactly measure19's expected loss.
    assert r["baseline"]["expected_loss_usd"] == pytest.approx(
        plain["baseline"]["expected_loss_usd"]
    )
    assert r["baseline"]["es_usd"] >= r["baseline"]["var_usd"] > r["baseline"]["expected_loss_usd"]


def test_premium_cut_raises_claims_ratio_but_not_the_tail() -> None:
    base = measure19_tail(FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, scenarios=1000)
    cut = measure19_tail(
        FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, premium_factor=0.8, scenarios=1000
    )
    assert cut["scenario"]["premium_usd"] == pytest.approx(0.8 * base["scenario"]["premium_usd"])
    assert cut["scenario"]["claims_ratio"] > base["scenario"]["claims_ratio"]
    assert cut["scenario"]["var_usd"] == base["scenario"]["var_usd"]


def test_higher_limits_cover_more_and_headroom_follows_the_var() -> None:
    r = measure19_tail(
        FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, limit_factor=1.5, scenarios=1000
    )
    b, s = r["baseline"], r["scenario"]
    assert s["insured_exposure_usd"] > b["insured_exposure_usd"]
    assert s["var_usd"] > b["var_usd"]
    assert r["cover_under_baseline_var_usd"] == pytest.approx(
        s["insured_exposure_usd"] * b["var_usd"] / s["var_usd"]
    )
    # Same mix scaled up: what fits under the same VaR is today's book, no more.
    assert r["extra_cover_under_same_var_usd"] == pytest.approx(0.0, abs=1.0)


def test_lower_grade_floor_gains_firms_exports_and_tail() -> None:
    r = measure19_tail(
        FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, min_grade=GRADES[-1], scenarios=1000
    )
    assert r["gained_firms"] > 0 and r["newly_covered_exports_usd"] > 0
    assert r["scenario"]["var_usd"] > r["baseline"]["var_usd"]
    # Worse firms per dollar: less cover fits under today's VaR than the looser book holds.
    assert r["cover_under_baseline_var_usd"] < r["scenario"]["insured_exposure_usd"]


def test_measure19_curve_is_monotone_in_the_loosening() -> None:
    curve = measure19_curve(
        FIRMS, CATALOG, product_id=PRODUCT, grades=GRADES, steps=5, scenarios=1000
    )
    assert list(curve["step"]) == list(range(5))
    for col in (
        "covered_firms",
        "insured_exposure_usd",
        "expected_loss_usd",
        "var_usd",
        "es_usd",
        "claims_ratio",
    ):
        assert curve[col].is_monotonic_increasing, col
    assert curve["var_usd"].iloc[-1] > curve["var_usd"].iloc[0]
    assert curve["premium_factor"].is_monotonic_decreasing
