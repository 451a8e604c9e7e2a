"""Quotes for a whole shipment plan: several shipments, to several buyers, in one call.

Each shipment is quoted as :func:`tradefinance.insurance.quote` would (the platform's buyer
grade when the buyer is known, the caller's grade otherwise). Shipments to the same buyer share
its credit limit, in plan order: a later shipment is insured only within what the earlier ones
left, the rest is uninsured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tradefinance.insurance import CountryTable, PlatformBuyer, QuoteRequest, quote
from tradefinance.pricing import PaymentTerms, PricingConfig, load_pricing_config
from tradefinance.products import Product, ProductCatalog


class Shipment(BaseModel):
    """One planned shipment."""

    model_config = ConfigDict(extra="forbid")

    buyer_id: str | None = Field(default=None, max_length=40, description="platform buyer id")
    buyer_country: str | None = Field(default=None, min_length=2, max_length=60)
    buyer_grade: str = Field(default="unknown", description="caller's grade, unknown buyers only")
    terms: PaymentTerms
    credit_days: int = Field(ge=0, le=720)
    amount_usd: float = Field(gt=0, le=1e10)


class PlanRequest(BaseModel):
    """A shipment plan to quote under one insurance product."""

    model_config = ConfigDict(extra="forbid")

    product_id: str | None = Field(default=None, description="insurance product id")
    cover: float | None = Field(default=None, gt=0, le=1)
    shipments: list[Shipment] = Field(min_length=1, max_length=100)


def _key(s: Shipment, i: int) -> str:
    # Shipments without a buyer id cannot be told to go to the same buyer: each stands alone.
    return s.buyer_id if s.buyer_id else f"#{i}"


def quote_plan(
    *,
    row: Mapping[str, Any],
    plan: PlanRequest,
    grades: Sequence[str],
    buyers: Mapping[str, PlatformBuyer],
    product: Product | None = None,
    catalog: ProductCatalog | None = None,
    pricing: PricingConfig | None = None,
    countries: CountryTable | None = None,
) -> dict[str, Any]:
    """Quote every shipment of a plan, sharing each buyer's limit, and total the plan.

    Parameters
    ----------
    row : mapping
        The exporter's features and model outputs.
    plan : PlanRequest
    grades : sequence of str
        Master-scale grades.
    buyers : mapping of buyer_id to PlatformBuyer
        The platform's known buyers (grades and limits); others are unknown buyers.
    product, catalog, pricing, countries : optional
        As for :func:`tradefinance.insurance.quote`.

    Returns
    -------
    dict
        ``quotes`` (one per shipment, in order) and ``totals`` (shipments, quoted, declined,
        amount, insured, uninsured, premium, subsidy, net premium).
    """
    cfg = pricing or load_pricing_config()
    left: dict[str, float] = {}
    quotes = []
    for i, s in enumerate(plan.shipments):
        req = QuoteRequest(product_id=plan.product_id, cover=plan.cover, **s.model_dump())
        key = _key(s, i)
        known = buyers.get(s.buyer_id) if s.buyer_id else None
        q = quote(
            row=row,
            request=req,
            product=product,
            catalog=catalog,
            grades=grades,
            pricing=cfg,
            countries=countries,
            buyer=known,
            limit_usd=left.get(key),
        )
        if q.decision == "quoted" and q.buyer_credit_limit_usd is not None:
            left[key] = max(q.buyer_credit_limit_usd - (q.insured_amount_usd or 0.0), 0.0)
        quotes.append(q.as_dict())
    quoted = [q for q in quotes if q["decision"] == "quoted"]

    def total(name: str) -> float:
        return float(sum(q[name] or 0.0 for q in quoted))

    return {
        "quotes": quotes,
        "totals": {
            "shipments": len(quotes),
            "quoted": len(quoted),
            "declined": len(quotes) - len(quoted),
            "amount_usd": float(sum(q["amount_usd"] for q in quotes)),
            "insured_amount_usd": total("insured_amount_usd"),
            "uninsured_amount_usd": float(sum(q["amount_usd"] for q in quotes))
            - total("insured_amount_usd"),
            "premium_usd": total("premium_usd"),
            "subsidy_usd": total("subsidy_usd"),
            "net_premium_usd": total("net_premium_usd"),
            "platform_graded": sum(q["buyer_grade_source"] == "platform" for q in quotes),
        },
    }
