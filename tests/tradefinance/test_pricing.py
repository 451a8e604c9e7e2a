"""Loan pricing (Basel IRB capital, DOMAIN.md §5.4 worked numbers) and premium-rate maths."""

from __future__ import annotations

import itertools

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tradefinance import pricing as P
from training.scale import PD_FLOOR

CFG = P.load_pricing_config()
INS = CFG.insurance
CATEGORIES = ["HI", "0", "1", "2", "3", "4", "5", "6"]  # increasing risk (HI priced like 0)
BUYERS = ["A", "B", "C", "D"]
GRADES = list(INS.exporter_grade_factor)  # best first, as on the master scale


def test_risk_weight_matches_basel_table() -> None:
    # DOMAIN.md §5.4: PD 1 %, LGD 45 %, M 2.5 -> RW 92.3 % (97.9 % with the 1.06 scaler).
    k = P.irb_capital(0.01, 0.45, 2.5)
    assert 12.5 * k == pytest.approx(0.923, abs=5e-4)
    scaled = P.irb_capital(
        0.01, 0.45, 2.5, params=CFG.loan.capital.model_copy(update={"scaler": 1.06})
    )
    assert 12.5 * scaled == pytest.approx(0.979, abs=5e-4)


@pytest.mark.parametrize(("pd", "expected"), [(0.01, 0.039), (0.02, 0.045), (0.05, 0.060)])
def test_worked_sme_loan_rates(pd: float, expected: float) -> None:
    # DOMAIN.md §5.4: funding 2 %, hurdle 12 %, opex 1 %, LGD 45 %, EUR 5 m turnover, 1 year.
    params = CFG.loan.model_copy(update={"reference_rate": 0.02, "hurdle_roe": 0.12, "opex": 0.01})
    r = P.loan_rate(pd, lgd=0.45, tenor_months=12, turnover_meur=5.0, params=params)
    assert r.rate == pytest.approx(expected, abs=5e-4)
    parts = r.reference + r.expected_loss + r.capital_charge + r.opex + r.margin
    assert r.raw_rate == pytest.approx(parts)
    assert r.expected_loss == pytest.approx(pd * 0.45)


def test_sme_adjustment_lowers_correlation_and_capital() -> None:
    big = P.irb_capital(0.02, 0.45, 1.0, turnover_meur=None)
    small = P.irb_capital(0.02, 0.45, 1.0, turnover_meur=5.0)
    mid = P.irb_capital(0.02, 0.45, 1.0, turnover_meur=27.5)
    assert small < mid < big
    assert P.irb_correlation(0.02, 5.0) == pytest.approx(P.irb_correlation(0.02) - 0.04)
    # Below EUR 5 m the adjustment is the EUR 5 m one.
    assert P.irb_correlation(0.02, 1.0) == pytest.approx(P.irb_correlation(0.02, 5.0))


@given(st.floats(0.0006, 0.3), st.floats(0.0006, 0.3))
def test_loan_rate_rises_with_pd(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert (
        P.loan_rate(lo, turnover_meur=2.0).raw_rate
        <= P.loan_rate(hi, turnover_meur=2.0).raw_rate + 1e-12
    )


def test_loan_rate_is_clipped_to_the_product_range_and_floors_pd() -> None:
    r = P.loan_rate(0.25, rate_range=(0.03, 0.10))
    assert r.rate == 0.10 and r.clipped == "cap" and r.raw_rate > 0.10
    r = P.loan_rate(0.0, rate_range=(0.05, 0.10))
    assert r.pd == CFG.loan.pd_floor == PD_FLOOR and r.rate == 0.05 and r.clipped == "floor"


def test_insured_lgd_lowers_the_rate() -> None:
    lgd = P.insured_lgd(0.90)
    assert lgd == pytest.approx(0.10 + CFG.loan.lgd_insured_loading)
    for pd in (0.01, 0.02, 0.05):
        assert P.loan_rate(pd, lgd=lgd).rate < P.loan_rate(pd).rate


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="pd must be"):
        P.irb_capital(0.0, 0.45, 1.0)
    with pytest.raises(ValueError, match="lgd must be"):
        P.irb_capital(0.01, 1.5, 1.0)
    with pytest.raises(ValueError, match="credit_days must be"):
        P.credit_day_band(400)
    with pytest.raises(ValueError, match="buyer_grade must be"):
        _rate(buyer_grade="Z")
    with pytest.raises(ValueError, match="terms must be"):
        _rate(terms="CAD")
    with pytest.raises(ValueError, match="cover must be"):
        _rate(cover=0.99)


def test_config_rejects_terms_out_of_order(tmp_path) -> None:
    raw = yaml.safe_load(
        (P.Path(P.__file__).parent / "config" / "pricing.yaml").read_text(encoding="utf-8")
    )
    raw["insurance"]["terms"]["L/C"] = 1.5
    path = tmp_path / "pricing.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ValueError, match="must not decrease from L/C to O/A"):
        P.load_pricing_config(path)


# ---------------------------------------------------------------------------------------------
# Premium rate
# ---------------------------------------------------------------------------------------------


def _rate(**kw: object) -> float:
    args = {
        "country_category": "HI",
        "buyer_grade": "B",
        "terms": "O/A",
        "credit_days": 60,
        "cover": 0.9,
        "exporter_grade": "BB",
    }
    args.update(kw)
    return P.premium_rate(**args).rate  # type: ignore[arg-type]


GRID = list(
    itertools.product(CATEGORIES, BUYERS, P.PAYMENT_TERMS, [0, 30, 45, 60, 90, 150, 180, 270, 360])
)


@pytest.mark.parametrize("dimension", ["country", "buyer", "terms", "days", "exporter", "cover"])
def test_premium_never_falls_when_risk_rises(dimension: str) -> None:
    """Over the whole grid: a riskier value of one driver never lowers the rate."""
    for cat, buyer, terms, days in GRID:
        base = {"country_category": cat, "buyer_grade": buyer, "terms": terms, "credit_days": days}
        if dimension == "country":
            seq = [_rate(**{**base, "country_category": c}) for c in CATEGORIES]
        elif dimension == "buyer":
            seq = [_rate(**{**base, "buyer_grade": b}) for b in BUYERS]
        elif dimension == "terms":
            seq = [_rate(**{**base, "terms": t}) for t in P.PAYMENT_TERMS]
        elif dimension == "days":
            seq = [_rate(**{**base, "credit_days": d}) for d in range(0, 361, 15)]
        elif dimension == "exporter":
            seq = [_rate(**{**base, "exporter_grade": g}) for g in GRADES]
        else:
            seq = [_rate(**{**base, "cover": c}) for c in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)]
        assert all(a <= b + 1e-15 for a, b in itertools.pairwise(seq)), (dimension, base, seq)


@given(
    st.sampled_from(CATEGORIES),
    st.sampled_from(BUYERS),
    st.sampled_from(P.PAYMENT_TERMS),
    st.integers(0, 360),
    st.integers(0, 360),
)
def test_longer_credit_never_cheaper(cat: str, buyer: str, terms: str, d1: int, d2: int) -> None:
    lo, hi = sorted((d1, d2))
    kw = {"country_category": cat, "buyer_grade": buyer, "terms": terms}
    assert _rate(credit_days=lo, **kw) <= _rate(credit_days=hi, **kw)


def test_components_multiply_to_the_rate() -> None:
    pr = P.premium_rate(
        country_category="4",
        buyer_grade="C",
        terms="D/A",
        credit_days=100,
        cover=0.8,
        exporter_grade="B",
        product_factor=0.9,
    )
    prod = 1.0
    for c in pr.components:
        prod *= c.factor
        assert c.rate_after == pytest.approx(prod)
    assert pr.rate == pytest.approx(prod)
    assert [c.name for c in pr.components] == [
        "country",
        "buyer",
        "terms",
        "tenor",
        "cover",
        "exporter",
        "product",
    ]


# DOMAIN.md §1.2 ranges (annual, 360-day O/A cover at 90 %, neutral exporter grade).
@pytest.mark.parametrize(
    ("category", "buyers", "low", "high"),
    [("4", ["A", "B", "C", "D"], 0.0110, 0.0240), ("6", ["A", "B", "C"], 0.0240, 0.0388)],
)
def test_oekb_ranges_per_category(
    category: str, buyers: list[str], low: float, high: float
) -> None:
    for b in buyers:
        r = _rate(country_category=category, buyer_grade=b, credit_days=360)
        assert low <= r <= high, (category, b, r)


def test_typical_cbec_shipment_is_in_the_published_band() -> None:
    # High-income buyer, 60 days O/A: Sinosure small exporters ~0.2 %, Allianz ~0.25 %, Aon 0.1-1.5 %.
    for buyer in ("A", "B", "unknown"):
        r = _rate(buyer_grade=buyer)
        assert 0.001 <= r <= 0.015
    assert 0.0015 <= _rate() <= 0.003
    # L/C cheaper than O/A.
    assert _rate(terms="L/C") < _rate(terms="O/A")


def test_one_pd_floor_and_one_exchange_rate() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    model = yaml.safe_load((root / "training/config/model.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((root / "features/config/feature_params.yaml").read_text("utf-8"))
    pricing = yaml.safe_load((root / "tradefinance/config/pricing.yaml").read_text("utf-8"))
    # The pricing file sets neither: it takes the model's floor and the features' rate.
    assert "pd_floor" not in pricing["loan"] and "cny_per_usd" not in pricing["loan"]
    assert CFG.loan.pd_floor == model["pd_floor"] == PD_FLOOR
    assert CFG.loan.cny_per_usd == params["usd_cny"]
    # The simulated world converts at the same rate (its own copy, checked here).
    sim = yaml.safe_load((root / "simulator/config/simulator.yaml").read_text(encoding="utf-8"))
    assert sim["loans"]["cny_per_usd"] == params["usd_cny"]
