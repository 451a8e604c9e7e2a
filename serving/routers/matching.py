"""Products, matching and loan pricing endpoints.

Banks (consent scope ``score``) and the firm itself match a firm to products for a financing
need and price a loan; any key can read the product catalog. Every firm-data answer is audited
before it is returned.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.deps import (
    CurrentKey,
    DbSession,
    FirmAccess,
    LoadedDep,
    SettingsDep,
    audit_access,
    require_firm_access,
)
from serving.guards import require_known, require_performing
from serving.market import MarketDep, effective_products, firm_row, grades_of, load_market
from serving.problems import field_error, problem_responses
from serving.schemas import LoanPriceResponse, MatchResponse, ProductsResponse
from serving.state import Loaded
from tradefinance.matching import Need, TraceRow, evaluate_rules, match
from tradefinance.pricing import PricingInputError, loan_lgd, loan_rate, turnover_meur
from tradefinance.products import Product
from tradefinance.rules import failed_counts

router = APIRouter(tags=["matching and pricing"])


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------


class MatchRequest(Need):
    """A financing need (amount, purpose, tenor, insurance wanted) and options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount_cny": 800000,
                    "purpose": "working_capital",
                    "tenor_months": 6,
                    "insurance_wanted": True,
                }
            ]
        },
    )
    # Strict: JSON true is not an amount of 1 CNY (schemathesis found it accepted).
    amount_cny: float = Field(gt=0, le=1e9, strict=True, description="amount wanted, CNY")
    recourse: bool = Field(
        default=True, description="search model-based recourse for the closest ineligible products"
    )


class LoanPriceRequest(BaseModel):
    """Price a loan for a firm: a product's range and LGD, or explicit ones."""

    model_config = ConfigDict(extra="forbid")

    product_id: str | None = Field(default=None, description="financing product (range, LGD)")
    tenor_months: int = Field(default=12, ge=1, le=120)
    lgd: float | None = Field(
        default=None, gt=0, le=1, description="override the LGD (not together with insured_cover)"
    )
    insured_cover: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="cover of an insurance policy assigned to the bank; only for products with "
        "policy_assignment (or no product), and not together with lgd",
    )


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


@router.get("/products", response_model=ProductsResponse, responses=problem_responses(401))
def list_products(_: CurrentKey, market: MarketDep, session: DbSession) -> dict[str, Any]:
    """List the product catalog in force: eligibility rules, amounts, tenors, pricing, policy tags, subsidies."""
    catalog = effective_products(session, market)
    return {"version": catalog.version, "products": [p.summary() for p in catalog]}


def _recourse_fn(
    loaded: Loaded, usc_code: str, row: Mapping[str, Any], settings: Any, budget: list[int]
) -> Any:
    """Wrap ``training.recourse.find_recourse`` with a product-eligibility goal and a budget.

    A plan depends on the firm and the product's rules only (the need's own checks block a
    plan before any search), so plans are kept per served bundle (:attr:`Loaded.memo`): the
    first match call of a firm searches, later ones with any need reuse the plans. The search
    counts the rules failed over all candidates at once (``failed_counts``); the searches of
    one call share the firm's candidate margins (:class:`~training.recourse.MarginCache`) and
    the call's time budget ``match_budget_s``, shared out evenly over the products still to
    search, each search also bounded by ``time_budget_s``.
    """
    from training.recourse import MarginCache, find_recourse, load_recourse_config

    grades = grades_of(loaded)
    actionable = set(loaded.catalog.actionable) if loaded.catalog is not None else set()
    movable = actionable & set(loaded.model.feature_names)
    config = load_recourse_config()
    ends = time.monotonic() + config.match_budget_s
    shared: list[MarginCache] = []

    def search(product: Product) -> dict[str, Any]:
        rules = product.rules

        def goal(scored: Mapping[str, Any]) -> bool:
            return all(t.passed for t in evaluate_rules(rules, scored, grades))

        def failures(frame: pd.DataFrame) -> Any:
            return failed_counts(rules, frame, row, grades)

        # A rule's threshold on a movable feature is a move of its own (straight to it).
        thresholds: dict[str, list[float]] = {}
        for rule in rules:
            if rule.field in movable and rule.op in (">=", "<=", ">", "<"):
                thresholds.setdefault(rule.field, []).append(float(rule.value))

        assert loaded.catalog is not None
        if not shared:
            shared.append(MarginCache(loaded.model, row))
        now = time.monotonic()
        result = find_recourse(
            loaded.model,
            loaded.catalog,
            dict(row),
            goal,
            scales=loaded.scales,
            targets=thresholds,
            max_steps=settings.recourse_max_steps,
            beam=settings.recourse_beam,
            failures=failures,
            config=config,
            cache=shared[0],
            deadline=now + max(ends - now, 0.0) / (budget[0] + 1),
        )
        return {
            "searched": True,
            "reached": result.reached,
            "blocked_by": [],
            "changes": [asdict(c) for c in result.changes],
            "after": {k: result.after.get(k) for k in ("pd", "score", "grade")},
        }

    def plan(product: Product, trace: list[TraceRow]) -> dict[str, Any] | None:
        failed = [t for t in trace if not t.passed]
        blockers = [
            t.field
            for t in failed
            if t.source == "need"
            or (t.source == "firm" and (t.field not in movable or t.actual is None))
        ]
        if blockers:
            return {"searched": False, "reached": False, "blocked_by": blockers, "changes": []}
        if loaded.catalog is None:
            return None
        if budget[0] <= 0:
            return None
        budget[0] -= 1  # a kept plan counts too: every call answers the same products
        key = ("match-recourse", usc_code, product.id, settings.recourse_max_steps)
        found = loaded.memo.get(key)
        return found if found is not None else loaded.memo.put(key, search(product))

    return plan


@router.post(
    "/firms/{usc_code}/matches",
    response_model=MatchResponse,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def firm_matches(
    request: Request,
    body: MatchRequest,
    access: Annotated[FirmAccess, Depends(require_firm_access("score"))],
    loaded: LoadedDep,
    session: DbSession,
    settings: SettingsDep,
    market: MarketDep,
) -> dict[str, Any]:
    """Every product ranked for a firm and a need: rule-by-rule trace, limit, price, bundles, recourse."""
    require_known(loaded, access.usc_code)
    row = firm_row(loaded, access.usc_code)
    purposes = market.products.purposes
    if body.purpose not in purposes:
        raise field_error(
            "body.purpose", f"unknown purpose {body.purpose!r}", "one of " + ", ".join(purposes)
        )
    if body.shipment is not None and body.shipment.buyer_country not in market.countries:
        raise field_error(
            "body.shipment.buyer_country",
            f"unknown country {body.shipment.buyer_country!r}",
            "an ISO3 code or name of the OECD table (GET /v1/countries)",
        )
    need = Need(**body.model_dump(exclude={"recourse"}))
    recourse = None
    if body.recourse and "explanation" in access.scopes:
        from training.recourse import load_recourse_config

        budget = [load_recourse_config().match_products]
        recourse = _recourse_fn(loaded, access.usc_code, row, settings, budget)
    catalog_names = set(loaded.catalog.actionable) if loaded.catalog is not None else None
    result = match(
        row,
        need,
        effective_products(session, market),
        grades=grades_of(loaded),
        pricing=market.pricing,
        countries=market.countries,
        actionable=catalog_names,
        recourse=recourse,
    )
    audit_access(request, session, [access], loaded.model_version)
    # Feature values in the traces and recourse plans need the explanation scope.
    return access.redact(
        {
            "usc_code": access.usc_code,
            "grade": row["grade"],
            "pd": row["pd"],
            "in_default": row["in_default"],
            "need": need.model_dump(),
            **result.as_dict(),
            "model_version": loaded.model_version,
            "as_of": loaded.as_of,
            "catalog_version": market.products.version,
        }
    )


@router.post(
    "/firms/{usc_code}/loan-price",
    response_model=LoanPriceResponse,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def firm_loan_price(
    request: Request,
    body: LoanPriceRequest,
    access: Annotated[FirmAccess, Depends(require_firm_access("score"))],
    loaded: LoadedDep,
    session: DbSession,
    market: MarketDep,
) -> dict[str, Any]:
    """Risk-based loan rate for a firm: reference + PD x LGD + capital charge + costs.

    A firm in default gets 409 (no risk-based price exists at PD 1).
    """
    require_known(loaded, access.usc_code)
    require_performing(loaded, access.usc_code)
    rate_range = None
    product = None
    if body.product_id is not None:
        if body.product_id not in market.products:
            raise field_error(
                "body.product_id", f"unknown product {body.product_id!r}", "a financing product id"
            )
        product = market.products[body.product_id]
        if product.pricing is None:
            raise field_error(
                "body.product_id",
                f"{body.product_id!r} is an insurance product",
                "a financing product id",
            )
        rate_range = (product.pricing.rate_min, product.pricing.rate_max)
    try:
        lgd = loan_lgd(
            product, lgd=body.lgd, insured_cover=body.insured_cover, params=market.pricing.loan
        )
    except PricingInputError as exc:
        raise field_error(f"body.{exc.field}", exc.message, exc.expected) from exc
    row = firm_row(loaded, access.usc_code)
    price = loan_rate(
        row["pd"],
        lgd=lgd,
        tenor_months=body.tenor_months,
        turnover_meur=turnover_meur(row.get("exports_12m_usd"), market.pricing.loan),
        rate_range=rate_range,
        params=market.pricing.loan,
    )
    audit_access(request, session, [access], loaded.model_version)
    return {
        "usc_code": access.usc_code,
        "product_id": body.product_id,
        "grade": row["grade"],
        "price": price.as_dict(),
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
    }


def register(app: FastAPI) -> None:
    """Mount the matching routes and load the market data now: a broken catalog stops start-up."""
    app.state.market = load_market(getattr(app.state, "settings", None))
    app.include_router(router, prefix="/v1")
