"""Buyer lookup: the platform's grade of an overseas buyer, its reasons and its credit limit.

Who may see what (tested in tests/serving/test_insurer_access.py):

- **insurer** and **admin** keys: the grade, PD, as-of date and model version, the recommended
  limit with its reasons, and (insurer) its own aggregate exposure on the buyer. These are the
  insurer's business data.
- The buyer's **payment experience** and the reasons' values come from exporters' records: they
  are shown only as aggregates over at least ``privacy.min_exporters_for_detail`` exporters
  (``insurer.yaml``); below that they are withheld and the reasons name features only.
- **enterprise** keys: the grade and its as-of date only (to understand a quote), no
  experience, no limit, no reasons.
- **bank** and **regulator** keys: no buyer lookup (regulators see the book's aggregates).

No firm's record leaves these endpoints, so they are not written to the firm-access audit log.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from serving.auth import Principal
from serving.deps import DbSession, require_role
from serving.insurer_data import BuyersDep, InsurerConfigDep, category_of, limit_book, reasons_of
from serving.market import MarketDep
from serving.problems import ProblemError, field_error, problem_responses
from tradefinance.buyer_limits import recommend_limit

router = APIRouter(tags=["buyers"])

BUYER_ID = re.compile(r"^BY[A-Z]{3}\d{6}$")
EXPERIENCE = (
    "exporters_12m",
    "shipped_usd_12m",
    "expected_usd_12m",
    "unpaid_share_12m",
    "unpaid_share_3m",
    "dbt_12m",
    "dbt_3m",
    "dbt_max_3m",
    "late_share_12m",
    "months_history",
    "claims_24m",
)
BuyerReader = Annotated[Principal, Depends(require_role("insurer", "admin", "enterprise"))]
BookReader = Annotated[Principal, Depends(require_role("insurer", "admin"))]


class BuyerResponse(BaseModel):
    """A buyer as the caller's role may see it."""

    buyer_id: str
    grade: str
    pd: float | None = None
    as_of: str
    source: str
    country_iso3: str
    country_category: str
    size_band: str | None = None
    sector: str | None = None
    in_default: bool | None = None
    detail_shown: bool | None = None
    experience: dict[str, Any] | None = None
    reasons: list[dict[str, Any]] | None = None
    limit: dict[str, Any] | None = None


def checked_buyer_id(buyer_id: str, field: str = "path.buyer_id") -> str:
    """Return the id or raise a 422 naming the field."""
    if not BUYER_ID.match(buyer_id):
        raise field_error(
            field, f"not a buyer id: {buyer_id!r}", "BY + ISO3 country code + 6 digits"
        )
    return buyer_id


@router.get(
    "/buyers/{buyer_id}",
    response_model=BuyerResponse,
    response_model_exclude_none=True,
    responses=problem_responses(401, 403, 404, 422),
)
def buyer(
    principal: BuyerReader,
    session: DbSession,
    buyers: BuyersDep,
    market: MarketDep,
    cfg: InsurerConfigDep,
    buyer_id: Annotated[str, Path(description="buyer id", examples=["BYUSA000042"])],
) -> dict[str, Any]:
    """Show a buyer's platform grade; for insurers also its limit, reasons and payment experience."""
    checked_buyer_id(buyer_id)
    if buyer_id not in buyers:
        raise ProblemError(404, f"{buyer_id} is not a graded platform buyer", kind="unknown-buyer")
    row = buyers.row(buyer_id)
    risk = buyers.risk(buyer_id)
    category = category_of(market.countries, risk.country_iso3)
    out: dict[str, Any] = {
        "buyer_id": buyer_id,
        "grade": risk.grade,
        "as_of": risk.as_of,
        "source": str(row.get("model_version", buyers.source)),
        "country_iso3": risk.country_iso3,
        "country_category": category,
    }
    if principal.role == "enterprise":
        return out
    detail = float(row.get("exporters_12m") or 0) >= cfg.privacy.min_exporters_for_detail
    book = limit_book(session, principal.org) if principal.role == "insurer" else None
    rec = (
        book.recommend(risk, category, cfg, market.pricing)
        if book is not None
        else recommend_limit(risk, category, cfg=cfg, pricing=market.pricing)
    )
    out.update(
        pd=risk.pd,
        size_band=risk.size_band,
        sector=risk.sector,
        in_default=bool(row.get("in_default", False)),
        detail_shown=detail,
        experience={k: row.get(k) for k in EXPERIENCE} if detail else None,
        reasons=reasons_of(row, detail),
        limit=rec.as_dict(),
    )
    return out


class BuyerListResponse(BaseModel):
    """Graded buyers (grades only)."""

    as_of: str | None
    count: int
    buyers: list[dict[str, Any]]


@router.get("/buyers", response_model=BuyerListResponse, responses=problem_responses(401, 403, 422))
def buyer_list(
    _: BookReader,
    buyers: BuyersDep,
    grade: Annotated[str | None, Query(description="only this grade")] = None,
    country: Annotated[str | None, Query(min_length=3, max_length=3, description="ISO3")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Graded buyers with grade, PD and as-of date (insurers and admins)."""
    f = buyers.frame
    # A book without graded buyers has no columns to filter: every filter leaves it empty.
    for column, wanted in (("grade", grade), ("country_iso3", country and country.upper())):
        if wanted is not None:
            f = f[f[column] == wanted] if column in f else f.iloc[0:0]
    cols = [c for c in ("buyer_id", "country_iso3", "size_band", "sector", "grade", "pd") if c in f]
    items = f[cols].head(limit).to_dict("records")
    as_of = str(f["as_of"].max().date()) if len(f) and "as_of" in f else None
    return {"as_of": as_of, "count": len(f), "buyers": items}
