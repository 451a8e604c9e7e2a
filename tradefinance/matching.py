"""Matching a firm and a financing need to products: rule engine, limits, prices and bundles.

Every product is evaluated rule by rule (``rule, field, required, actual, pass``) over the firm's
catalog features and model outputs (``pd``, ``score``, ``grade``, ``supervision_class``), plus
the need's own checks (purpose, amount and tenor within the product's ranges). A firm in
default at the as-of date (``in_default``, grade D) fails every product on an extra first trace
row ``not in default`` and gets no price, limit or premium. Financing
products get an indicative limit (trade volume x multiple, scaled down with PD) and a
risk-based rate (:func:`tradefinance.pricing.loan_rate`); insurance products an indicative premium
(:func:`tradefinance.insurance.quote`). A **bundle** assigns an insurance policy to a financing
product that accepts assignment: the bank's LGD falls to the insured LGD and so does the rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features.labels import value_label
from features.texts import text
from tradefinance import insurance as ins
from tradefinance.pricing import (
    PaymentTerms,
    PricingConfig,
    insured_lgd,
    load_pricing_config,
    loan_rate,
    turnover_meur,
)
from tradefinance.products import IN_DEFAULT_FIELD, MODEL_FIELDS, Product, ProductCatalog
from tradefinance.rules import (
    TraceRow,
    evaluate_rules,
    in_default,
    is_missing,
)

# ---------------------------------------------------------------------------------------------
# Needs, limits and matches
# ---------------------------------------------------------------------------------------------


class Shipment(BaseModel):
    """A shipment for an indicative premium (defaults from ``pricing.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    buyer_country: str = Field(min_length=2, max_length=60)
    buyer_grade: str = "unknown"
    terms: PaymentTerms = "O/A"
    credit_days: int = Field(default=60, ge=0, le=720)


class Need(BaseModel):
    """A firm's financing need."""

    model_config = ConfigDict(extra="forbid")

    amount_cny: float = Field(gt=0, le=1e9, description="amount wanted, CNY")
    purpose: str = Field(min_length=1, max_length=40, description="e.g. working_capital")
    tenor_months: int = Field(ge=1, le=120)
    insurance_wanted: bool = False
    shipment: Shipment | None = None


def need_rules(product: Product, need: Need) -> list[TraceRow]:
    """Check the need against a financing product: purpose, amount and tenor ranges."""
    assert product.amount is not None and product.tenor is not None
    checks = [
        ("need.purpose", "in", product.purposes, need.purpose, need.purpose in product.purposes),
        (
            "need.amount_cny",
            ">=",
            product.amount.min_cny,
            need.amount_cny,
            need.amount_cny >= product.amount.min_cny,
        ),
        (
            "need.amount_cny",
            "<=",
            product.amount.max_cny,
            need.amount_cny,
            need.amount_cny <= product.amount.max_cny,
        ),
        (
            "need.tenor_months",
            ">=",
            product.tenor.min_months,
            need.tenor_months,
            need.tenor_months >= product.tenor.min_months,
        ),
        (
            "need.tenor_months",
            "<=",
            product.tenor.max_months,
            need.tenor_months,
            need.tenor_months <= product.tenor.max_months,
        ),
    ]
    rows = []
    for fld, op, req, act, ok in checks:
        shown = "{" + ", ".join(req) + "}" if isinstance(req, list) else f"{req:g}"
        rows.append(
            TraceRow(
                rule=f"{fld} {op.replace('_', ' ')} {shown}",
                field=fld,
                op=op,
                required=req,
                actual=act,
                passed=bool(ok),
                source="need",
            )
        )
    return rows


def limit_basis_usd(product: Product, row: Mapping[str, Any]) -> float:
    """Return the trade volume a product's limit is sized from, USD (0 when unknown)."""
    basis = product.limit.basis
    source, divisor = {
        "exports_monthly": ("exports_12m_usd", 12.0),
        "exports_annual": ("exports_12m_usd", 1.0),
        "gmv_monthly": ("gmv_6m_usd", 6.0),
        "overseas_stock": ("overseas_stock_usd", 1.0),
    }[basis]
    value = row.get(source)
    if value is None or is_missing(value):
        return 0.0
    return max(float(value), 0.0) / divisor


def indicative_limit_cny(
    product: Product, row: Mapping[str, Any], pd_: float, pricing: PricingConfig
) -> float:
    """Size the indicative limit: basis x multiple x max(0, 1 - PD / pd_zero), capped, rounded down.

    Parameters
    ----------
    product : Product
    row : mapping
        Firm features.
    pd_ : float
        The firm's PD.
    pricing : PricingConfig

    Returns
    -------
    float
        CNY; 0 when the firm has no trade volume on the basis or PD reaches ``pd_zero``.
    """
    p = pricing.loan
    scale = max(0.0, 1.0 - pd_ / p.limit_pd_zero)
    raw = limit_basis_usd(product, row) * p.cny_per_usd * product.limit.multiple * scale
    if product.amount is not None:
        raw = min(raw, product.amount.max_cny)
    return math.floor(raw / p.limit_round_cny) * p.limit_round_cny


def _hints(trace: Sequence[TraceRow], actionable: set[str] | None) -> list[dict[str, Any]]:
    """Say what each failed rule asks for.

    ``change`` is one of ``increase``, ``decrease``, ``change`` (a category), ``improve_grade``
    (a model output: see what-if and recourse), ``provide_missing`` (no value on record) or
    ``adjust_request`` (the need itself is outside the product's ranges).
    """
    out = []
    for t in trace:
        if t.passed:
            continue
        # A code per kind of change (the portal translates it).
        if t.source == "need":
            what = "adjust_request"
        elif t.field == IN_DEFAULT_FIELD:
            what = "cure_default"
        elif t.field in MODEL_FIELDS:
            what = "improve_grade"
        elif t.op in (">=", ">"):
            what = "increase"
        elif t.op in ("<=", "<"):
            what = "decrease"
        else:
            what = "change"
        if t.actual is None and t.source not in ("need", "model"):
            what = "provide_missing"
        out.append(
            {
                "field": t.field,
                "rule": t.rule,
                "text_zh": t.text("zh"),
                "text_en": t.text("en"),
                "actual_zh": value_label(t.field, t.actual, "zh"),
                "actual_en": value_label(t.field, t.actual, "en"),
                "required": t.required,
                "actual": t.actual,
                "change": what,
                "actionable": None
                if actionable is None or t.source == "need"
                else (t.field in actionable or t.field in MODEL_FIELDS)
                if t.field != IN_DEFAULT_FIELD
                else False,
            }
        )
    return out


RecourseFn = Callable[[Product, list[TraceRow]], Any]


@dataclass
class MatchResult:
    """Everything matching found for one firm and need."""

    financing: list[dict[str, Any]] = field(default_factory=list)
    insurance: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"financing": self.financing, "insurance": self.insurance, "bundles": self.bundles}


def match(
    row: Mapping[str, Any],
    need: Need,
    catalog: ProductCatalog,
    *,
    grades: Sequence[str],
    pricing: PricingConfig | None = None,
    countries: Any = None,
    actionable: set[str] | None = None,
    recourse: RecourseFn | None = None,
) -> MatchResult:
    """Rank every product for a firm and a need.

    Parameters
    ----------
    row : mapping
        The firm's features plus model outputs ``pd``, ``score``, ``grade``,
        ``supervision_class``.
    need : Need
    catalog : ProductCatalog
    grades : sequence of str
        Master-scale grades, best first.
    pricing : PricingConfig, optional
        The shipped configuration when omitted.
    countries : tradefinance.insurance.CountryTable, optional
        The shipped OECD table when omitted.
    actionable : set of str, optional
        Actionable feature names (from the feature catalog) to mark hints.
    recourse : callable, optional
        ``recourse(product, trace) -> plan`` for ineligible products (e.g. a wrapper around
        ``training.recourse.find_recourse``); its result is returned as ``recourse.plan``.

    Returns
    -------
    MatchResult
        Financing ranked eligible first, then those whose offer covers the whole need, then
        fewest failed rules, then cheapest; insurance eligible first, fewest failed rules,
        cheapest; and the bundles.
    """
    cfg = pricing or load_pricing_config()
    table = countries if countries is not None else ins.load_country_table()
    turnover = turnover_meur(_num(row.get("exports_12m_usd")), cfg.loan)
    shipment = need.shipment or Shipment(**cfg.default_shipment.model_dump())
    defaulted = in_default(row)

    def _recourse(product: Product, trace: list[TraceRow]) -> dict[str, Any] | None:
        if all(t.passed for t in trace):
            return None
        # No model change makes a firm in default eligible: cure the default first.
        plan = recourse(product, trace) if recourse is not None and not defaulted else None
        return {"hints": _hints(trace, actionable), "plan": plan}

    result = MatchResult()
    for product in catalog.financing:
        result.financing.append(
            _financing_match(product, row, need, grades, cfg, turnover, _recourse)
        )
    for product in catalog.insurance:
        result.insurance.append(
            _insurance_match(product, row, need, grades, cfg, table, shipment, _recourse)
        )
    result.bundles = _bundles(row, need, catalog, grades, cfg, table, turnover, shipment)
    # An eligible loan that covers the whole need ranks before one that offers less.
    result.financing.sort(
        key=lambda m: (
            not m["eligible"],
            not m["covers_need"],
            m["failed"],
            m["price"]["rate"] if m["price"] is not None else math.inf,
        )
    )
    result.insurance.sort(
        key=lambda m: (
            not m["eligible"],
            m["failed"],
            m["quote"]["rate"] if m["quote"]["rate"] is not None else math.inf,
        )
    )
    return result


def _financing_match(
    product: Product,
    row: Mapping[str, Any],
    need: Need,
    grades: Sequence[str],
    cfg: PricingConfig,
    turnover: float | None,
    recourse_of: Callable[[Product, list[TraceRow]], dict[str, Any] | None],
) -> dict[str, Any]:
    """One financing product for a firm and need: trace, limit, offer, price, recourse."""
    pd_ = float(row["pd"])
    defaulted = in_default(row)
    assert product.pricing is not None
    trace = evaluate_rules(product.rules, row, grades) + need_rules(product, need)
    # A firm in default (PD 1) gets neither a limit nor a risk-based price.
    limit = 0.0 if defaulted else indicative_limit_cny(product, row, pd_, cfg)
    price = (
        None
        if defaulted
        else loan_rate(
            pd_,
            lgd=product.pricing.lgd,
            tenor_months=need.tenor_months,
            turnover_meur=turnover,
            rate_range=(product.pricing.rate_min, product.pricing.rate_max),
            params=cfg.loan,
        )
    )
    eligible = all(t.passed for t in trace)
    offer = min(need.amount_cny, limit)
    return {
        **_product_head(product),
        "eligible": eligible,
        "trace": [t.as_dict() for t in trace],
        "failed": sum(not t.passed for t in trace),
        "limit_cny": limit,
        "offer_cny": offer if eligible else 0.0,
        "covers_need": eligible and limit >= need.amount_cny,
        "price": price.as_dict() if price is not None else None,
        "interest_cny": offer * price.rate * need.tenor_months / 12.0
        if eligible and price is not None
        else 0.0,
        "recourse": recourse_of(product, trace),
    }


def _insurance_match(
    product: Product,
    row: Mapping[str, Any],
    need: Need,
    grades: Sequence[str],
    cfg: PricingConfig,
    table: Any,
    shipment: Shipment,
    recourse_of: Callable[[Product, list[TraceRow]], dict[str, Any] | None],
) -> dict[str, Any]:
    """One insurance product for a firm and need: trace, indicative quote, recourse."""
    trace = evaluate_rules(product.rules, row, grades)
    amount_usd = max(need.amount_cny / cfg.loan.cny_per_usd, 1.0)
    # A product with its own fixed shipment (upstream purchase cover) sets the rest.
    request = (
        ins.QuoteRequest(product_id=product.id, amount_usd=amount_usd)
        if product.insurance is not None and product.insurance.shipment is not None
        else ins.QuoteRequest(
            product_id=product.id,
            buyer_country=shipment.buyer_country,
            buyer_grade=shipment.buyer_grade,
            terms=shipment.terms,
            credit_days=shipment.credit_days,
            amount_usd=amount_usd,
        )
    )
    q = ins.quote(
        row=row,
        request=request,
        product=product,
        grades=grades,
        pricing=cfg,
        countries=table,
        trace=trace,
    )
    eligible = all(t.passed for t in trace)
    return {
        **_product_head(product),
        "eligible": eligible,
        "requested": need.insurance_wanted,
        "trace": [t.as_dict() for t in trace],
        "failed": sum(not t.passed for t in trace),
        "limit_usd": limit_basis_usd(product, row) * product.limit.multiple,
        "quote": q.as_dict(),
        "recourse": recourse_of(product, trace),
    }


def _num(value: Any) -> float | None:
    return None if is_missing(value) else float(value)


def _product_head(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "name_en": product.name_en,
        "name_zh": product.name_zh,
        "provider_en": product.provider.name_en,
        "provider_zh": product.provider.name_zh,
        "kind": product.kind,
        "policy_tags": list(product.policy_tags),
        "policy_tag_names_zh": [text(f"policy_tag.{t}", "zh") for t in product.policy_tags],
        "policy_tag_names_en": [text(f"policy_tag.{t}", "en") for t in product.policy_tags],
        "subsidies": list(product.subsidies),
    }


def _bundles(
    row: Mapping[str, Any],
    need: Need,
    catalog: ProductCatalog,
    grades: Sequence[str],
    cfg: PricingConfig,
    table: Any,
    turnover: float | None,
    shipment: Shipment,
) -> list[dict[str, Any]]:
    """Financing products that accept an assigned policy x insurance policies the firm gets."""
    pd_ = float(row["pd"])
    out: list[dict[str, Any]] = []
    policies = [p for p in catalog.insurance if p.kind == "export_credit_insurance"]
    for fin in catalog.financing:
        if not fin.policy_assignment:
            continue
        assert fin.pricing is not None
        for pol in policies:
            assert pol.insurance is not None
            pol_trace = evaluate_rules(pol.rules, row, grades)
            if not all(t.passed for t in pol_trace):
                continue
            fin_trace = evaluate_rules(fin.rules, row, grades, overrides={"insured": 1})
            fin_trace += need_rules(fin, need)
            if not all(t.passed for t in fin_trace):
                continue
            limit = indicative_limit_cny(fin, row, pd_, cfg)
            offer = min(need.amount_cny, limit)
            if offer <= 0:
                continue
            cover = pol.insurance.cover_default
            rng = (fin.pricing.rate_min, fin.pricing.rate_max)
            common = {
                "tenor_months": need.tenor_months,
                "turnover_meur": turnover,
                "rate_range": rng,
                "params": cfg.loan,
            }
            plain = loan_rate(pd_, lgd=fin.pricing.lgd, **common)  # type: ignore[arg-type]
            lgd_b = min(fin.pricing.lgd, insured_lgd(cover, cfg.loan))
            bundled = loan_rate(pd_, lgd=lgd_b, **common)  # type: ignore[arg-type]
            # The policy insures the receivables the advance is made against.
            invoice_usd = offer / (fin.advance_rate or 1.0) / cfg.loan.cny_per_usd
            q = ins.quote(
                row=row,
                request=ins.QuoteRequest(
                    product_id=pol.id,
                    buyer_country=shipment.buyer_country,
                    buyer_grade=shipment.buyer_grade,
                    terms=shipment.terms,
                    credit_days=min(shipment.credit_days, pol.insurance.max_credit_days),
                    amount_usd=invoice_usd,
                    cover=cover,
                ),
                product=pol,
                grades=grades,
                pricing=cfg,
                countries=table,
                trace=pol_trace,
            )
            years = need.tenor_months / 12.0
            interest_plain = offer * plain.rate * years
            interest_bundled = offer * bundled.rate * years
            subsidy = 0.0
            if "policy_financing_interest" in fin.subsidies:
                s = cfg.subsidies.policy_financing_interest
                subsidy = min(interest_bundled * s.share, s.cap_cny_per_year * years)
            net_premium_cny = (q.net_premium_usd or 0.0) * cfg.loan.cny_per_usd
            out.append(
                {
                    "financing_id": fin.id,
                    "insurance_id": pol.id,
                    "name_en": f"{pol.name_en} + {fin.name_en}",
                    "name_zh": f"{pol.name_zh} + {fin.name_zh}",
                    "eligible_unbundled": all(
                        t.passed for t in evaluate_rules(fin.rules, row, grades)
                    ),
                    "trace": [t.as_dict() for t in fin_trace],
                    "offer_cny": offer,
                    "cover": cover,
                    "lgd_unbundled": fin.pricing.lgd,
                    "lgd_bundled": lgd_b,
                    "rate_unbundled": plain.rate,
                    "rate_bundled": bundled.rate,
                    "price_unbundled": plain.as_dict(),
                    "price_bundled": bundled.as_dict(),
                    "interest_unbundled_cny": interest_plain,
                    "interest_bundled_cny": interest_bundled,
                    "interest_subsidy_cny": subsidy,
                    "premium_quote": q.as_dict(),
                    "net_premium_cny": net_premium_cny,
                    "saving_cny": interest_plain - (interest_bundled - subsidy) - net_premium_cny,
                }
            )
    out.sort(key=lambda b: -b["saving_cny"])
    return out
