"""The insurer's work: buyer-limit requests, shipment-plan quotes, claims, the book's tail.

Access: a limit request, a plan quote and a claim concern one exporter, so they need the
exporter's own key or an insurer key with the exporter's consent (scope ``quote``), and each is
written to the audit log before the answer leaves. An insurer's limits, claims and book are its
own business: only its keys (and admins, for any insurer named in ``insurer``) read them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pandas as pd
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.auth import Principal
from serving.deps import (
    DbSession,
    FirmAccess,
    LoadedDep,
    audit_access,
    require_firm_access,
    require_role,
)
from serving.guards import require_known
from serving.insurer_data import BuyersDep, InsurerConfigDep, category_of, limit_book
from serving.market import MarketDep, firm_row, grades_of
from serving.models import BuyerLimitDecision, ClaimNoticeRow
from serving.problems import ProblemError, field_error, problem_responses
from tradefinance.buyer_limits import BuyerRisk
from tradefinance.claims import ClaimNotice, assess_claim
from tradefinance.portfolio import portfolio_loss
from tradefinance.shipment_plan import PlanRequest, quote_plan

router = APIRouter(tags=["insurer"])
QuoteAccess = Annotated[FirmAccess, Depends(require_firm_access("quote"))]
BookKey = Annotated[Principal, Depends(require_role("insurer", "admin"))]


def _insurer(access_or_key: FirmAccess | Principal, named: str | None) -> str:
    """Return the insurer a request is for: an insurer key's own org; others must name one."""
    p = access_or_key.principal if isinstance(access_or_key, FirmAccess) else access_or_key
    if isinstance(access_or_key, FirmAccess) and p.role not in ("insurer", "enterprise"):
        # A bank may quote with the firm's consent, but limits and claims are the insurer's.
        raise ProblemError(403, f"role {p.role} cannot request limits or file claims for a firm")
    if p.role == "insurer":
        if named is not None and named != p.org:
            raise field_error(
                "insurer", f"an insurer key acts for {p.org!r} only", "omit it or give your own org"
            )
        return p.org
    if not named:
        raise field_error("insurer", "missing", "the insurer's name (org of its keys)")
    return named


class LimitRequestBody(BaseModel):
    """An exporter's request for a credit limit on a buyer."""

    model_config = ConfigDict(extra="forbid")

    buyer_id: str = Field(pattern=r"^BY[A-Z]{3}\d{6}$", description="platform buyer id")
    amount_usd: float = Field(gt=0, le=1e9)
    insurer: str | None = Field(default=None, description="insurer asked (enterprise keys)")


def _risk(buyers: Any, buyer_id: str, cfg: Any) -> BuyerRisk:
    if buyer_id in buyers:
        return buyers.risk(buyer_id)
    # An unknown buyer: no platform experience; its country is in its id.
    unknown = cfg.buyer_scale["unknown"]
    return BuyerRisk(buyer_id, buyer_id[2:5], "unknown", "unknown", unknown.pd, None, "caller")


@router.post("/firms/{usc_code}/buyer-limits", responses=problem_responses(401, 403, 404, 422, 503))
def request_limit(
    request: Request,
    body: LimitRequestBody,
    access: QuoteAccess,
    session: DbSession,
    buyers: BuyersDep,
    market: MarketDep,
    cfg: InsurerConfigDep,
) -> dict[str, Any]:
    """Grant, reduce or refuse an exporter's limit request on a buyer, with the reason."""
    insurer = _insurer(access, body.insurer)
    risk = _risk(buyers, body.buyer_id, cfg)
    book = limit_book(session, insurer)
    category = category_of(market.countries, risk.country_iso3)
    decision = book.request(access.usc_code, risk, body.amount_usd, category, cfg, market.pricing)
    session.add(
        BuyerLimitDecision(
            insurer=insurer,
            firm_usc=access.usc_code,
            buyer_id=risk.buyer_id,
            country_iso3=risk.country_iso3,
            requested_usd=body.amount_usd,
            granted_usd=decision.granted_usd,
            decision=decision.decision,
            reason_code=decision.reason.code,
            buyer_grade=risk.grade,
            grade_as_of=risk.as_of,
            decided_at=dt.datetime.now(dt.UTC),
            key_id=access.principal.key_id,
        )
    )
    audit_access(request, session, [access], buyers.source)
    return {**decision.as_dict(), "insurer": insurer, "buyer_grade_source": risk.source}


@router.get("/insurer/limits", responses=problem_responses(401, 403, 422))
def limits(
    key: BookKey,
    session: DbSession,
    insurer: Annotated[str | None, Query(description="admins: which insurer")] = None,
) -> dict[str, Any]:
    """List the insurer's limits in force and the aggregate per buyer."""
    org = _insurer(key, insurer)
    items = limit_book(session, org).items()
    per_buyer: dict[str, float] = {}
    for _, b, _, v in items:
        per_buyer[b] = per_buyer.get(b, 0.0) + v
    return {
        "insurer": org,
        "limits": [
            {"usc_code": u, "buyer_id": b, "country_iso3": c, "limit_usd": v}
            for u, b, c, v in items
        ],
        "by_buyer": [{"buyer_id": b, "aggregate_usd": v} for b, v in sorted(per_buyer.items())],
    }


@router.post("/firms/{usc_code}/quote-plan", responses=problem_responses(401, 403, 404, 422, 503))
def plan_quote(
    request: Request,
    body: PlanRequest,
    access: QuoteAccess,
    loaded: LoadedDep,
    session: DbSession,
    market: MarketDep,
    buyers: BuyersDep,
    cfg: InsurerConfigDep,
) -> dict[str, Any]:
    """Quote a shipment plan (several buyers) at once; known buyers use the platform's grade."""
    require_known(loaded, access.usc_code)
    product_id = body.product_id or market.pricing.insurance.default_product
    if product_id not in market.products or market.products[product_id].insurance is None:
        raise field_error(
            "body.product_id",
            f"not an insurance product: {product_id!r}",
            "an insurance product id",
        )
    for i, s in enumerate(body.shipments):
        known = s.buyer_id is not None and s.buyer_id in buyers
        if not known and (s.buyer_country is None or s.buyer_country not in market.countries):
            raise field_error(
                f"body.shipments[{i}].buyer_country",
                f"unknown buyer {s.buyer_id!r} needs a country",
                "an ISO3 code of the OECD table",
            )
        if s.buyer_grade not in market.pricing.insurance.buyer_grades:
            raise field_error(
                f"body.shipments[{i}].buyer_grade", repr(s.buyer_grade), "A, B, C, D or unknown"
            )
    book = limit_book(session, access.principal.org) if access.principal.role == "insurer" else None
    platform = {}
    for s in body.shipments:
        if s.buyer_id and s.buyer_id in buyers and s.buyer_id not in platform:
            risk = buyers.risk(s.buyer_id)
            own = book.approved(access.usc_code, s.buyer_id) if book is not None else 0.0
            rec = (
                book.recommend(
                    risk, category_of(market.countries, risk.country_iso3), cfg, market.pricing
                )
                if book is not None
                else None
            )
            # The exporter's approved limit, else what is still free on the buyer (or its limit).
            limit = own if own > 0 else (rec.available_usd if rec is not None else None)
            platform[s.buyer_id] = buyers.platform_buyer(s.buyer_id, limit)
    row = firm_row(loaded, access.usc_code)
    out = quote_plan(
        row=row,
        plan=body,
        grades=grades_of(loaded),
        buyers=platform,
        product=market.products[product_id],
        pricing=market.pricing,
        countries=market.countries,
    )
    audit_access(request, session, [access], loaded.model_version)
    return {
        "usc_code": access.usc_code,
        "exporter_grade": row["grade"],
        **out,
        "model_version": loaded.model_version,
        "buyer_grades": buyers.source,
    }


class ClaimBody(BaseModel):
    """A notice of possible loss: the buyer did not pay (or went insolvent)."""

    model_config = ConfigDict(extra="forbid")

    policy_id: str = Field(min_length=1, max_length=40)
    buyer_id: str = Field(pattern=r"^BY[A-Z]{3}\d{6}$")
    due_date: dt.date
    notified_date: dt.date | None = Field(default=None, description="today when omitted")
    loss_usd: float = Field(gt=0, le=1e9)
    kind: str = Field(default="non_payment", pattern="^(non_payment|insolvency)$")
    cover: float | None = Field(default=None, gt=0, le=1, description="the policy's cover")
    insurer: str | None = None


def _assess(row: ClaimNoticeRow, cfg: Any, as_of: dt.date) -> dict[str, Any]:
    notice = ClaimNotice(
        row.policy_id,
        row.firm_usc,
        row.buyer_id,
        dt.date.fromisoformat(row.due_date),
        dt.date.fromisoformat(row.notified_date),
        row.loss_usd,
        "insolvency" if row.kind == "insolvency" else "non_payment",
    )
    a = assess_claim(
        notice,
        cover=row.cover,
        approved_limit_usd=row.approved_limit_usd,
        country_category=row.country_category,
        as_of=as_of,
        params=cfg.claims,
    )
    out = {
        "claim_id": row.id,
        "insurer": row.insurer,
        "filed_at": row.filed_at.isoformat(),
        **a.as_dict(),
    }
    out["platform_row"] = _platform_row(row, out)
    return out


def _platform_row(row: ClaimNoticeRow, assessed: dict[str, Any]) -> dict[str, Any]:
    """Return the claim as a row of the ``insurance_claims`` contract (feeds the buyer experience).

    ``kuaxin buyers score --extra-claims FILE`` reads these rows (the JSON of
    ``GET /v1/insurer/claims``), so a claim's outcome moves the buyer's grade at the next as-of.
    """
    status = {"waiting": "pending", "paid": "paid", "declined": "declined"}[assessed["status"]]
    decided = {"paid": assessed["payable_from"], "declined": row.notified_date}.get(status)
    return {
        "claim_id": f"KX{row.id:010d}",
        "policy_id": row.policy_id,
        "usc_code": row.firm_usc,
        "buyer_id": row.buyer_id,
        "notified_date": row.notified_date,
        "loss_usd": row.loss_usd,
        "paid_usd": assessed["indemnity_usd"] if status == "paid" else 0.0,
        "decision_date": decided,
        "status": status,
    }


@router.post(
    "/firms/{usc_code}/claims", status_code=201, responses=problem_responses(401, 403, 422, 503)
)
def file_claim(
    request: Request,
    body: ClaimBody,
    access: QuoteAccess,
    session: DbSession,
    market: MarketDep,
    cfg: InsurerConfigDep,
    buyers: BuyersDep,
) -> dict[str, Any]:
    """File a notice of non-payment; the answer is the claim's assessment today."""
    insurer = _insurer(access, body.insurer)
    today = dt.datetime.now(dt.UTC).date()
    notified = body.notified_date or today
    if notified > today:
        raise field_error("body.notified_date", str(notified), "a date not after today")
    product = market.products[market.pricing.insurance.default_product]
    cover = body.cover or (
        product.insurance.cover_default
        if product.insurance
        else market.pricing.insurance.reference_cover
    )
    risk = _risk(buyers, body.buyer_id, cfg)
    row = ClaimNoticeRow(
        insurer=insurer,
        firm_usc=access.usc_code,
        policy_id=body.policy_id,
        buyer_id=body.buyer_id,
        kind=body.kind,
        due_date=body.due_date.isoformat(),
        notified_date=notified.isoformat(),
        loss_usd=body.loss_usd,
        cover=cover,
        approved_limit_usd=limit_book(session, insurer).approved(access.usc_code, body.buyer_id),
        country_category=category_of(market.countries, risk.country_iso3),
        filed_at=dt.datetime.now(dt.UTC),
        key_id=access.principal.key_id,
    )
    session.add(row)
    session.flush()  # the claim's id names its platform row
    try:
        out = _assess(row, cfg, today)
    except ValueError as exc:
        session.rollback()
        raise field_error(
            "body", str(exc), "due_date on or before notified_date, loss_usd > 0"
        ) from exc
    audit_access(request, session, [access], buyers.source)
    return {**out, "claim_id": row.id}


@router.get("/insurer/claims", responses=problem_responses(401, 403, 422))
def claims(
    key: BookKey,
    session: DbSession,
    cfg: InsurerConfigDep,
    insurer: Annotated[str | None, Query(description="admins: which insurer")] = None,
) -> dict[str, Any]:
    """List the insurer's claims, each assessed as of today, with totals by status."""
    org = _insurer(key, insurer)
    rows = session.scalars(
        sa.select(ClaimNoticeRow).where(ClaimNoticeRow.insurer == org).order_by(ClaimNoticeRow.id)
    ).all()
    today = dt.datetime.now(dt.UTC).date()
    items = [_assess(r, cfg, today) for r in rows]
    totals: dict[str, dict[str, float]] = {}
    for c in items:
        t = totals.setdefault(c["status"], {"claims": 0, "loss_usd": 0.0, "indemnity_usd": 0.0})
        t["claims"] += 1
        t["loss_usd"] += c["loss_usd"]
        t["indemnity_usd"] += c["indemnity_usd"]
    return {"insurer": org, "as_of": today.isoformat(), "claims": items, "totals": totals}


@router.get("/insurer/book", responses=problem_responses(401, 403, 422))
def book(
    key: BookKey,
    session: DbSession,
    buyers: BuyersDep,
    market: MarketDep,
    cfg: InsurerConfigDep,
    insurer: Annotated[str | None, Query(description="admins: which insurer")] = None,
    scenarios: Annotated[int | None, Query(ge=100, le=100_000)] = None,
    seed: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> dict[str, Any]:
    """Show the book's exposure and tail: EL, VaR and ES, concentration, the loss histogram.

    Exposure per exporter and buyer is its limit in force (the most the insurer can lose on
    it), at the default product's cover; PDs are the platform's buyer PDs (the ``unknown`` PD for
    ungraded buyers).
    """
    org = _insurer(key, insurer)
    items = limit_book(session, org).items()
    if not items:
        return {"insurer": org, "policies": 0, "buyers": 0, "note": "no limits in force"}
    product = market.products[market.pricing.insurance.default_product]
    cover = (
        product.insurance.cover_default
        if product.insurance
        else market.pricing.insurance.reference_cover
    )
    rows = []
    for u, b, c, v in items:
        r = _risk(buyers, b, cfg)
        rows.append(
            {
                "policy_id": f"{u}:{b}",
                "buyer_id": b,
                "exposure_usd": v,
                "cover": cover,
                "pd": min(max(r.pd, 1e-6), 1 - 1e-6),
                "country_iso3": c,
                "sector": r.sector or "unknown",
            }
        )
    out = portfolio_loss(pd.DataFrame(rows), scenarios=scenarios, seed=seed, params=cfg.portfolio)
    return {"insurer": org, "cover": cover, **out}
