"""Insurance quotes: country table, premium with components, limits, subsidy and declines."""

from __future__ import annotations

from pathlib import Path

import pytest
from kx_firms import GRADES

from tradefinance.insurance import (
    CountryTableError,
    QuoteInputError,
    QuoteRequest,
    load_country_table,
    quote,
)
from tradefinance.pricing import load_pricing_config
from tradefinance.products import load_products

CATALOG = load_products(grades=GRADES)
CFG = load_pricing_config()
TABLE = load_country_table()
FIRM = {
    "grade": "BB",
    "pd": 0.015,
    "dishonest_listed": 0,
    "exports_12m_usd": 1_200_000.0,
    "firm_age_months": 48,
}


def _quote(row=None, **kw):
    req = {
        "buyer_country": "USA",
        "buyer_grade": "B",
        "terms": "O/A",
        "credit_days": 60,
        "amount_usd": 100_000.0,
    }
    req.update(kw)
    req = {k: v for k, v in req.items() if v is not None}
    return quote(row=row or FIRM, request=QuoteRequest(**req), catalog=CATALOG, grades=GRADES)


def test_country_table_flags_high_income_and_categories() -> None:
    assert TABLE.lookup("USA").category == "HI"
    assert TABLE.lookup("germany").category == "HI"
    assert TABLE.lookup("SGP").category == "0"  # classified 0, not unclassified high income
    assert TABLE.lookup("VNM").category == "4"
    assert TABLE.lookup("RUS").category == "7"
    assert TABLE.lookup("CHN").category == "2"
    with pytest.raises(KeyError, match="buyer_country"):
        TABLE.lookup("Atlantis")


def test_bad_country_table(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("name,code\nX,Y\n", encoding="utf-8")
    with pytest.raises(CountryTableError, match="expected columns"):
        load_country_table(p)
    p.write_text("country,iso3,crc_as_parsed,notes\nX,XXX,9,\n", encoding="utf-8")
    with pytest.raises(CountryTableError, match="line 2"):
        load_country_table(p)


def test_quote_has_components_limit_liability_and_subsidy() -> None:
    q = _quote()
    assert q.decision == "quoted" and not q.declines
    names = [c["name"] for c in q.components]
    assert names == ["country", "buyer", "terms", "tenor", "cover", "exporter", "product"]
    assert q.components[-1]["rate_after"] == pytest.approx(q.rate)
    assert q.premium_usd == pytest.approx(
        max(q.rate * q.insured_amount_usd, CFG.insurance.minimum_premium_usd)
    )
    assert q.buyer_credit_limit_usd > 0
    assert q.insured_amount_usd + q.uninsured_amount_usd == pytest.approx(100_000.0)
    assert q.max_liability_usd >= q.buyer_credit_limit_usd * q.cover
    # Exports under the threshold: the municipal subsidy applies.
    assert q.subsidy_share == CFG.subsidies.premium.share
    assert q.net_premium_usd == pytest.approx(q.premium_usd * (1 - q.subsidy_share))
    big = _quote(row={**FIRM, "exports_12m_usd": 50e6})
    assert big.subsidy_share == CFG.subsidies.premium.share_above_threshold
    assert big.net_premium_usd == pytest.approx(big.premium_usd * (1 - big.subsidy_share))


def test_typical_quotes_fall_in_domain_ranges() -> None:
    # DOMAIN.md §1.2: ~0.1-1.5 % of turnover; OeKB cat. 4: 1.10-2.40 % p.a.; cat. 6: 2.40-3.88 % p.a.
    assert 0.001 <= _quote().rate <= 0.015
    for buyer in ("A", "B", "C", "D"):
        r = _quote(buyer_country="VNM", buyer_grade=buyer, credit_days=360).rate
        assert 0.011 <= r <= 0.024, (buyer, r)
    for buyer in ("A", "B", "C"):
        r = _quote(buyer_country="NGA", buyer_grade=buyer, credit_days=360).rate
        assert 0.024 <= r <= 0.0388, (buyer, r)


def test_amount_above_buyer_limit_is_uninsured() -> None:
    q = _quote(buyer_grade="D", amount_usd=5e6)
    assert q.insured_amount_usd == q.buyer_credit_limit_usd
    assert q.uninsured_amount_usd == pytest.approx(5e6 - q.buyer_credit_limit_usd)


@pytest.mark.parametrize(
    ("kw", "row", "code"),
    [
        ({"buyer_country": "RUS"}, None, "country_category"),
        ({"buyer_country": "Argentina"}, None, "country_category"),
        ({}, {**FIRM, "dishonest_listed": 1}, "dishonest_listed"),
        ({"credit_days": 400}, None, "credit_days"),
        ({"credit_days": 200, "product_id": "sinosure_sme_easy_cover"}, None, "credit_days"),
        ({"cover": 0.95}, None, "cover"),
        ({}, {**FIRM, "grade": "C", "pd": 0.5}, "eligibility"),
    ],
)
def test_declines_carry_the_reason(kw, row, code) -> None:
    q = _quote(row=row, **kw)
    assert q.decision == "declined"
    assert code in [d.code for d in q.declines]
    assert q.rate is None and q.premium_usd is None
    assert all(d.message_en and d.message_zh for d in q.declines)


def test_sme_easy_cover_is_about_half_the_traditional_rate() -> None:
    full = _quote().rate
    easy = _quote(product_id="sinosure_sme_easy_cover").rate
    assert 0.4 <= easy / full <= 0.6


UPSTREAM_ONLY = {"buyer_country": None, "buyer_grade": None, "terms": None, "credit_days": None}


def test_upstream_cover_prices_the_firm_itself() -> None:
    good = _quote(product_id="sinosure_upstream_purchase_cover", **UPSTREAM_ONLY)
    worse = _quote(
        row={**FIRM, "grade": "B", "pd": 0.04},
        product_id="sinosure_upstream_purchase_cover",
        **UPSTREAM_ONLY,
    )
    assert good.buyer_country == "CHN" and good.decision == "quoted"
    assert worse.rate > good.rate
    # Sending the product's own values is fine; another buyer country is refused, not replaced.
    same = _quote(
        product_id="sinosure_upstream_purchase_cover",
        **{**UPSTREAM_ONLY, "buyer_country": "chn", "terms": "O/A"},
    )
    assert same.rate == good.rate
    with pytest.raises(QuoteInputError) as err:
        _quote(product_id="sinosure_upstream_purchase_cover", buyer_grade=None)
    assert err.value.field == "buyer_country" and "CHN" in err.value.expected


def test_an_ordinary_product_needs_the_shipment() -> None:
    with pytest.raises(QuoteInputError) as err:
        _quote(buyer_country=None)
    assert err.value.field == "buyer_country"
    with pytest.raises(QuoteInputError) as err:
        _quote(terms=None)
    assert err.value.field == "terms"


def test_worse_exporter_grade_never_cheaper() -> None:
    rates = [_quote(row={**FIRM, "grade": g}, product_id="hxi_steci_standard") for g in GRADES[:6]]
    seq = [q.rate for q in rates if q.decision == "quoted"]
    assert len(seq) >= 2 and seq == sorted(seq)


def test_unknown_inputs_raise_clear_errors() -> None:
    with pytest.raises(KeyError, match="unknown product"):
        _quote(product_id="nope")
    with pytest.raises(ValueError, match="insurance product"):
        _quote(product_id="pcb_cbec_credit_loan")
    with pytest.raises(ValueError, match="buyer_grade"):
        _quote(buyer_grade="Z")
