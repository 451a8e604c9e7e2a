"""Short-term export credit insurance quotes and the country-risk table.

An insurer (consent scope ``quote``) or the firm itself asks for a quote on a shipment; the
answer is a premium with its components, limits, subsidy and net premium, or a decline with
its reasons (a decline is an answer, not an error).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from features.labels import country_name, oecd_category_label
from serving.deps import (
    CurrentKey,
    DbSession,
    FirmAccess,
    LoadedDep,
    audit_access,
    require_firm_access,
)
from serving.guards import require_known
from serving.insurer_data import BuyersDep, InsurerConfigDep, category_of, limit_book
from serving.market import MarketDep, firm_row, grades_of
from serving.problems import field_error, problem_responses
from serving.schemas import CountriesResponse, QuoteResponse
from tradefinance.buyer_limits import recommend_limit
from tradefinance.insurance import QuoteInputError, QuoteRequest, quote

router = APIRouter(tags=["insurance"])


@router.get("/countries", response_model=CountriesResponse, responses=problem_responses(401))
def countries(_: CurrentKey, market: MarketDep) -> dict[str, Any]:
    """OECD country risk categories (HI = high-income, unclassified) used for premiums."""
    return {
        "as_of": market.countries.as_of,
        "countries": [
            {
                "iso3": c.iso3,
                "name": c.name,
                "name_zh": country_name(c.iso3, "zh", c.name),
                "name_en": country_name(c.iso3, "en", c.name),
                "category_zh": oecd_category_label(c.category, "zh"),
                "category_en": oecd_category_label(c.category, "en"),
                "crc": c.crc,
                "category": c.category,
                "high_income_unclassified": c.high_income_unclassified,
                "declined": c.category in market.pricing.insurance.declined_categories,
            }
            for c in market.countries.countries
        ],
    }


@router.post(
    "/firms/{usc_code}/quote",
    response_model=QuoteResponse,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def firm_quote(
    request: Request,
    body: QuoteRequest,
    access: Annotated[FirmAccess, Depends(require_firm_access("quote"))],
    loaded: LoadedDep,
    session: DbSession,
    market: MarketDep,
    buyers: BuyersDep,
    cfg: InsurerConfigDep,
) -> dict[str, Any]:
    """Premium rate and components, buyer limit, maximum liability, subsidy, net premium, or a decline."""
    require_known(loaded, access.usc_code)
    product_id = body.product_id or market.pricing.insurance.default_product
    if product_id not in market.products:
        raise field_error(
            "body.product_id", f"unknown product {body.product_id!r}", "an insurance product id"
        )
    product = market.products[product_id]
    if product.insurance is None:
        raise field_error(
            "body.product_id", f"{product_id!r} is a {product.kind}", "an insurance product id"
        )
    known = body.buyer_id is not None and body.buyer_id in buyers
    if body.buyer_id is not None and not known and body.buyer_country is None:
        raise field_error(
            "body.buyer_country",
            f"buyer {body.buyer_id!r} is not a graded platform buyer",
            "an ISO3 code or name of the OECD table (GET /v1/countries)",
        )
    if not known and body.buyer_country is not None and body.buyer_country not in market.countries:
        raise field_error(
            "body.buyer_country",
            f"unknown country {body.buyer_country!r}",
            "an ISO3 code or name of the OECD table (GET /v1/countries)",
        )
    grades = market.pricing.insurance.buyer_grades
    if body.buyer_grade is not None and body.buyer_grade not in grades:
        raise field_error(
            "body.buyer_grade",
            f"unknown buyer grade {body.buyer_grade!r}",
            "one of " + ", ".join(grades),
        )
    platform = None
    if known and body.buyer_id is not None:
        # The platform's grade; the limit is this insurer's (or the recommended) one.
        risk = buyers.risk(body.buyer_id)
        category = category_of(market.countries, risk.country_iso3)
        if access.principal.role == "insurer":
            book = limit_book(session, access.principal.org)
            own = book.approved(access.usc_code, body.buyer_id)
            rec = book.recommend(risk, category, cfg, market.pricing)
            limit = own if own > 0 else rec.available_usd
        else:
            limit = recommend_limit(risk, category, cfg=cfg, pricing=market.pricing).limit_usd
        platform = buyers.platform_buyer(body.buyer_id, limit)
    row = firm_row(loaded, access.usc_code)
    try:
        q = quote(
            row=row,
            request=body,
            product=product,
            grades=grades_of(loaded),
            pricing=market.pricing,
            countries=market.countries,
            buyer=platform,
        )
    except QuoteInputError as exc:
        raise field_error(f"body.{exc.field}", exc.message, exc.expected) from exc
    audit_access(request, session, [access], loaded.model_version)
    return access.redact(
        {
            "usc_code": access.usc_code,
            "exporter_grade": row["grade"],
            "quote": q.as_dict(),
            "model_version": loaded.model_version,
            "as_of": loaded.as_of,
        }
    )
