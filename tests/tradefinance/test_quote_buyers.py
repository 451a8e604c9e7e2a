"""Quotes use the platform's buyer grade for known buyers; shipment plans share buyer limits."""

from __future__ import annotations

import pytest
from kx_firms import GRADES

from tradefinance.insurance import PlatformBuyer, QuoteInputError, QuoteRequest, quote
from tradefinance.pricing import load_pricing_config
from tradefinance.products import load_products
from tradefinance.shipment_plan import PlanRequest, quote_plan

CATALOG = load_products(grades=GRADES)
P = load_pricing_config().insurance
FIRM = {
    "grade": "BB",
    "pd": 0.015,
    "dishonest_listed": 0,
    "exports_12m_usd": 1.2e6,
    "firm_age_months": 48,
}
KNOWN = PlatformBuyer("BYDEU000007", "DEU", "D", 0.08, "2025-06-30", "buyer model v3", 60_000.0)


def _req(**kw) -> QuoteRequest:
    base = {"terms": "O/A", "credit_days": 60, "amount_usd": 100_000.0}
    return QuoteRequest(**{**base, **kw})


def test_known_buyer_is_priced_with_the_platform_grade_not_the_callers() -> None:
    q = quote(
        row=FIRM,
        request=_req(buyer_id=KNOWN.buyer_id, buyer_grade="A"),
        catalog=CATALOG,
        grades=GRADES,
        buyer=KNOWN,
    )
    assert q.decision == "quoted"
    assert (q.buyer_grade, q.buyer_grade_source, q.buyer_grade_as_of) == (
        "D",
        "platform",
        "2025-06-30",
    )
    assert q.buyer_country == "DEU" and q.buyer_credit_limit_usd == KNOWN.limit_usd
    assert q.insured_amount_usd == KNOWN.limit_usd
    as_caller = quote(
        row=FIRM, request=_req(buyer_country="DEU", buyer_grade="D"), catalog=CATALOG, grades=GRADES
    )
    assert q.rate == pytest.approx(as_caller.rate)
    claimed_a = quote(
        row=FIRM, request=_req(buyer_country="DEU", buyer_grade="A"), catalog=CATALOG, grades=GRADES
    )
    assert claimed_a.rate < q.rate  # the caller's "A" would have been cheaper: it is ignored


def test_unknown_buyer_uses_the_callers_grade_and_says_so() -> None:
    q = quote(
        row=FIRM,
        request=_req(buyer_id="BYUSA999999", buyer_country="USA", buyer_grade="C"),
        catalog=CATALOG,
        grades=GRADES,
    )
    assert q.buyer_grade == "C" and q.buyer_grade_source == "caller" and q.buyer_grade_as_of is None
    assert any("unknown buyer" in n["message_en"] and n["message_zh"] for n in q.notes)
    # Neither a platform buyer nor a country: refused when quoted, naming the field (a product
    # with a fixed shipment needs neither, so the request itself may omit both).
    with pytest.raises(QuoteInputError, match="buyer_country"):
        quote(
            row=FIRM,
            request=QuoteRequest(terms="O/A", credit_days=60, amount_usd=1.0),
            catalog=CATALOG,
            grades=GRADES,
        )
    with pytest.raises(QuoteInputError, match="buyer_country"):
        quote(row=FIRM, request=_req(buyer_id="BYUSA999999"), catalog=CATALOG, grades=GRADES)


def test_shipment_plan_shares_a_buyers_limit_in_order_and_totals_add_up() -> None:
    plan = PlanRequest(
        shipments=[
            {"buyer_id": KNOWN.buyer_id, "terms": "O/A", "credit_days": 60, "amount_usd": 40_000},
            {"buyer_id": KNOWN.buyer_id, "terms": "O/A", "credit_days": 90, "amount_usd": 40_000},
            {"buyer_id": KNOWN.buyer_id, "terms": "D/P", "credit_days": 30, "amount_usd": 10_000},
            {
                "buyer_country": "VNM",
                "buyer_grade": "B",
                "terms": "D/A",
                "credit_days": 120,
                "amount_usd": 25_000,
            },
            {"buyer_country": "RUS", "terms": "O/A", "credit_days": 60, "amount_usd": 5_000},
        ]
    )
    out = quote_plan(
        row=FIRM, plan=plan, grades=GRADES, buyers={KNOWN.buyer_id: KNOWN}, catalog=CATALOG
    )
    q = out["quotes"]
    assert [x["insured_amount_usd"] for x in q[:2]] == [40_000, 20_000]
    assert q[2]["decision"] == "declined" and q[2]["declines"][0]["code"] == "buyer_limit"
    assert q[3]["buyer_grade_source"] == "caller" and q[3]["insured_amount_usd"] == 25_000
    assert q[4]["decision"] == "declined"
    t = out["totals"]
    assert (t["shipments"], t["quoted"], t["declined"], t["platform_graded"]) == (5, 3, 2, 3)
    assert t["insured_amount_usd"] == pytest.approx(85_000)
    assert t["uninsured_amount_usd"] == pytest.approx(t["amount_usd"] - 85_000)
    assert t["premium_usd"] == pytest.approx(sum(x["premium_usd"] or 0 for x in q))
    assert t["net_premium_usd"] == pytest.approx(t["premium_usd"] - t["subsidy_usd"])
