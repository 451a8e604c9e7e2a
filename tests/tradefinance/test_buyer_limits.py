"""Buyer credit limits: recommended limit with reasons, requests, aggregate never exceeded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tradefinance.buyer_limits import BuyerRisk, LimitBook, grade_of_pd, recommend_limit
from tradefinance.insurer_config import load_insurer_config
from tradefinance.pricing import load_pricing_config

CFG = load_insurer_config()
PRICING = load_pricing_config().insurance


def _buyer(grade: str = "B", pd_: float | None = None, size: str = "medium", **kw) -> BuyerRisk:
    pd_used = CFG.buyer_scale[grade].pd if pd_ is None else pd_
    return BuyerRisk(
        kw.pop("buyer_id", "BYUSA000001"), kw.pop("country", "USA"), size, grade, pd_used, **kw
    )


def test_grade_of_pd_follows_the_buyer_master_scale() -> None:
    for g in CFG.buyer_grades:
        assert grade_of_pd(CFG.buyer_scale[g].pd) == g
    assert grade_of_pd(0.0) == CFG.buyer_grades[0]
    assert grade_of_pd(1.0) == CFG.buyer_grades[-1]
    with pytest.raises(ValueError, match="pd"):
        grade_of_pd(1.5)


def test_recommended_limit_is_base_times_grade_share_times_size_with_reasons() -> None:
    rec = recommend_limit(_buyer("B", size="large"), "4")
    expected = PRICING.buyer_limit_base_usd["4"] * PRICING.buyer_grades["B"].limit_share
    expected *= CFG.limits.size_multiplier["large"]
    assert rec.limit_usd == pytest.approx(min(expected, CFG.limits.appetite.max_buyer_limit_usd))
    codes = [r.code for r in rec.reasons]
    assert codes[:3] == ["base", "grade", "size"]
    assert all(r.message_en and r.message_zh for r in rec.reasons)
    assert rec.available_usd == rec.limit_usd


def test_worse_grade_smaller_buyer_lower_limit_and_refusals() -> None:
    limits = [recommend_limit(_buyer(g), "HI").limit_usd for g in CFG.buyer_grades]
    assert all(a >= b for a, b in itertools.pairwise(limits)) and limits[0] > limits[-1]
    assert (
        recommend_limit(_buyer(size="small"), "HI").limit_usd
        < recommend_limit(_buyer(), "HI").limit_usd
    )
    declined = recommend_limit(_buyer(country="RUS"), "7")
    assert declined.limit_usd == 0 and declined.reasons[-1].code == "country_declined"
    risky = recommend_limit(_buyer("D", pd_=CFG.limits.refuse_pd + 0.01), "HI")
    assert risky.limit_usd == 0 and risky.reasons[-1].code == "pd_refused"


def test_appetite_caps_bind_and_say_so() -> None:
    # Expected-loss budget: a D buyer just under the refusal line.
    d = recommend_limit(_buyer("D", pd_=CFG.limits.refuse_pd * 0.99, size="large"), "HI")
    budget = CFG.limits.appetite.max_buyer_expected_loss_usd / (d.pd * CFG.portfolio.lgd)
    assert d.limit_usd <= budget and "cap_expected_loss" in [r.code for r in d.reasons]
    # Country ceiling nearly used by other buyers.
    left = 30_000.0
    rec = recommend_limit(
        _buyer("A"), "HI", country_exposure_usd=CFG.limits.appetite.max_country_exposure_usd - left
    )
    assert rec.limit_usd == pytest.approx(left) and rec.reasons[-1].code == "cap_country"


def test_requests_are_granted_reduced_refused_and_never_exceed_the_limit() -> None:
    book = LimitBook()
    buyer = _buyer("B")
    limit = book.recommend(buyer, "HI").limit_usd
    a = book.request("F1", buyer, 0.6 * limit, "HI")
    assert a.decision == "granted" and a.granted_usd == 0.6 * limit
    b = book.request("F2", buyer, 0.6 * limit, "HI")
    assert b.decision == "reduced" and b.granted_usd == pytest.approx(0.4 * limit)
    c = book.request("F3", buyer, 10_000, "HI")
    assert c.decision == "refused" and c.reason.code == "full"
    assert book.aggregate(buyer.buyer_id) == pytest.approx(limit)
    # Replacing one's own limit frees it first.
    d = book.request("F1", buyer, 0.2 * limit, "HI")
    assert d.decision == "granted" and book.aggregate(buyer.buyer_id) == pytest.approx(0.6 * limit)


def test_random_requests_keep_every_buyer_within_its_limit() -> None:
    rng = np.random.default_rng(11)
    book = LimitBook()
    buyers = [_buyer(g, buyer_id=f"BYDEU{i:06d}", country="DEU") for i, g in enumerate("ABCD")]
    for _ in range(300):
        b = buyers[rng.integers(len(buyers))]
        dec = book.request(f"F{rng.integers(40)}", b, float(rng.uniform(1e3, 4e5)), "HI")
        assert dec.granted_usd <= dec.requested_usd
        for x in buyers:
            assert book.aggregate(x.buyer_id) <= book.recommend(x, "HI").limit_usd + 1e-6


def test_a_buyer_that_stops_paying_loses_limit_and_approved_limits_are_cut() -> None:
    book = LimitBook()
    good = _buyer("A", as_of="2025-06-30")
    for usc in ("F1", "F2", "F3"):
        book.request(usc, good, 150_000, "HI")
    before = book.aggregate(good.buyer_id)
    # Next as-of: payment experience turned bad, the grade model moved it to D.
    bad = _buyer("D", pd_=0.10, as_of="2025-07-31")
    rec = book.review(bad, "HI")
    assert rec.limit_usd < before
    assert book.aggregate(bad.buyer_id) <= rec.limit_usd
    assert rec.reasons[-1].code == "cut"
    assert book.request("F4", bad, 10_000, "HI").decision == "refused"
