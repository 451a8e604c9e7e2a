"""Applications, the provider's side: inbox, the frozen view, decisions and outcomes.

Banks and insurers see only applications to their own products (403 otherwise), and only
while the firm's application consent is active. Opening an application and every decision is
audited before anything is returned or changed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.applications import (
    act,
    config_for,
    conflict,
    consent_state,
    detail,
    record_outcomes,
    summary,
)
from serving.auth import Principal
from serving.deps import (
    ApplicationId,
    DbSession,
    FirmAccess,
    SettingsDep,
    audit_access,
    require_role,
)
from serving.market import MarketDep
from serving.models import Application
from serving.problems import FieldError, ProblemError, problem_responses
from tradefinance.applications import (
    DecisionError,
    Status,
    TransitionError,
    adverse_action_notice,
    canonical,
    check_conditions,
    check_information,
    check_terms,
    next_status,
    reason_options,
)
from tradefinance.outcomes import OutcomeFileError, read_csv

router = APIRouter(prefix="/provider", tags=["provider: applications"])

ProviderKey = Annotated[Principal, Depends(require_role("bank", "insurer"))]


class DecisionRequest(BaseModel):
    """A provider's decision on an application."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "approve",
                    "terms": {"amount_cny": 500000, "rate": 0.06, "tenor_months": 6},
                },
                {"action": "decline", "reasons": ["policy:outside_appetite"], "note": ""},
            ]
        },
    )

    action: Literal["approve", "approve_with_conditions", "request_info", "decline"]
    terms: dict[str, float] | None = Field(
        default=None,
        description="financing: amount_cny, rate, tenor_months; insurance: cover, credit_days, "
        "limit_usd (premium_rate optional) - within the frozen product version's ranges",
    )
    conditions: list[dict[str, Any]] = Field(
        default_factory=list,
        description="approve_with_conditions: [{code, insurance_product_id?, note?}]",
    )
    information: list[str] = Field(default_factory=list, description="request_info: item codes")
    reasons: list[str] = Field(
        default_factory=list, description="decline: codes from the application's reason_options"
    )
    note: str = Field(default="", max_length=2000)


class Disbursement(BaseModel):
    """A disbursement of an approved application."""

    model_config = ConfigDict(extra="forbid")

    date: date
    amount_cny: float = Field(gt=0)


class Repayment(BaseModel):
    """A repayment status record of a disbursed application."""

    model_config = ConfigDict(extra="forbid")

    date: date
    status: Literal["current", "late", "repaid", "defaulted"]
    days_past_due: int = Field(default=0, ge=0, le=3650)
    amount_cny: float | None = Field(default=None, ge=0, description="paid in the period")
    outstanding_cny: float | None = Field(default=None, ge=0)


def _own(session: DbSession, principal: Principal, application_id: int) -> Application:
    app = session.get(Application, application_id)
    if app is None:
        raise ProblemError(404, f"no application {application_id}")
    if app.provider_org != principal.org:
        raise ProblemError(
            403, f"application {application_id} is not to a product of {principal.org}"
        )
    return app


def _consented(session: DbSession, app: Application) -> None:
    state = consent_state(session, app)
    if state != "active":
        raise ProblemError(
            403,
            f"the firm's consent for application {app.id} is {state}; its record is closed to you",
            kind="no-consent",
        )


def _access(principal: Principal, app: Application) -> FirmAccess:
    return FirmAccess(principal, app.firm_usc, f"application {app.id}", app.consent_id)


def _provider_view(session: DbSession, app: Application, cfg: Any) -> dict[str, Any]:
    out = detail(session, app, "provider")
    out["reason_options"] = reason_options(out["frozen"], cfg)
    return out


@router.get("/applications", responses=problem_responses(401, 403))
def inbox(
    principal: ProviderKey,
    session: DbSession,
    status: Annotated[list[Status] | None, Query(description="only these states")] = None,
) -> list[dict[str, Any]]:
    """Applications to the caller's products, newest first (no score data: open one to see it)."""
    query = sa.select(Application).where(Application.provider_org == principal.org)
    if status:
        query = query.where(Application.status.in_([s.value for s in status]))
    return [summary(a) for a in session.scalars(query.order_by(Application.id.desc()))]


@router.get("/applications/{application_id}", responses=problem_responses(401, 403, 404, 503))
def open_application(
    request: Request,
    application_id: ApplicationId,
    principal: ProviderKey,
    session: DbSession,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Open the frozen view of one application (score, reasons, trace, limit, price as applied); audited.

    The first opening moves a submitted application under review.
    """
    app = _own(session, principal, application_id)
    _consented(session, app)
    audit_access(request, session, [_access(principal, app)], app.model_version)
    if app.status == Status.submitted.value:
        act(session, app, "open", principal)
        session.commit()
    return _provider_view(session, app, config_for(settings))


def _validated(
    body: DecisionRequest, frozen: dict[str, Any], session: DbSession, market: Any, cfg: Any
) -> dict[str, Any]:
    from serving.market import effective_products

    decision: dict[str, Any] = {"action": body.action, "note": body.note}
    if body.action in ("approve", "approve_with_conditions"):
        decision["terms"] = check_terms(frozen["product"], body.terms)
    if body.action == "approve_with_conditions":
        insurance = [
            p.id
            for p in effective_products(session, market).insurance
            if p.kind == "export_credit_insurance"
        ]
        decision["conditions"] = check_conditions(
            body.conditions, frozen["product"], insurance, cfg
        )
    if body.action == "request_info":
        decision["information"] = check_information(body.information, cfg)
    if body.action == "decline":
        decision["notice"] = adverse_action_notice(frozen, body.reasons, cfg, body.note)
    return decision


@router.post(
    "/applications/{application_id}/decision",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def decide(
    request: Request,
    application_id: ApplicationId,
    body: DecisionRequest,
    principal: ProviderKey,
    session: DbSession,
    settings: SettingsDep,
    market: MarketDep,
) -> dict[str, Any]:
    """Approve (with terms within the product's ranges), approve with conditions, ask for information, or decline with reasons."""
    app = _own(session, principal, application_id)
    _consented(session, app)
    try:
        next_status(app.status, body.action)
    except TransitionError as exc:
        raise conflict(exc, "provider") from exc
    cfg = config_for(settings)
    frozen = json.loads(app.frozen)
    try:
        decision = _validated(body, frozen, session, market, cfg)
    except DecisionError as exc:
        raise ProblemError(
            422,
            str(exc),
            kind="invalid-input",
            errors=[
                FieldError(field=p.field, message=p.message, expected=p.expected)
                for p in exc.problems
            ],
        ) from exc
    audit_access(request, session, [_access(principal, app)], app.model_version)
    act(session, app, body.action, principal, decision)
    app.decision = canonical(decision)
    terms = decision.get("terms")
    if terms is not None:
        app.approved_amount_cny = (
            terms.get("amount_cny") or terms["limit_usd"] * market.pricing.loan.cny_per_usd
        )
    session.commit()
    return _provider_view(session, app, cfg)


def _single_outcome(
    request: Request,
    session: DbSession,
    principal: Principal,
    app: Application,
    row: dict[str, Any],
    settings: Any,
) -> dict[str, Any]:
    cfg = config_for(settings)
    result = record_outcomes(session, principal.org, [row], cfg, principal, quarantine=False)
    if result.report.quarantined:
        session.rollback()
        reasons = result.report.quarantined[0]["_reason"].split("; ")
        status = 409 if any(": state:" in r for r in reasons) else 422
        raise ProblemError(
            status,
            "; ".join(reasons),
            kind="illegal-transition" if status == 409 else "invalid-input",
            errors=[
                FieldError(field=f"body.{r.split(':')[0]}", message=r.split(": ", 1)[-1])
                for r in reasons
            ],
        )
    audit_access(request, session, [_access(principal, app)], app.model_version)
    return _provider_view(session, app, cfg)


@router.post(
    "/applications/{application_id}/disbursement",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def disburse(
    request: Request,
    application_id: ApplicationId,
    body: Disbursement,
    principal: ProviderKey,
    session: DbSession,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Record the disbursement of an approved application (at most the approved amount)."""
    app = _own(session, principal, application_id)
    row = {"application_id": app.id, "event": "disbursement", **body.model_dump()}
    return _single_outcome(request, session, principal, app, row, settings)


@router.post(
    "/applications/{application_id}/repayments",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def repayment(
    request: Request,
    application_id: ApplicationId,
    body: Repayment,
    principal: ProviderKey,
    session: DbSession,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Record a repayment status (``repaid`` closes it; ``defaulted`` or 90+ days past due mark a default)."""
    app = _own(session, principal, application_id)
    row = {"application_id": app.id, "event": "repayment", **body.model_dump()}
    return _single_outcome(request, session, principal, app, row, settings)


@router.post(
    "/outcomes",
    responses=problem_responses(401, 403, 422),
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
def upload_outcomes(
    principal: ProviderKey,
    session: DbSession,
    settings: SettingsDep,
    body: Annotated[str, Body(media_type="text/csv")],
) -> dict[str, Any]:
    """Upload outcome rows as CSV (``application_id,event,date,amount_cny,days_past_due,status,outstanding_cny``).

    Rows that fail the contract or name another provider's application, a state that does not
    allow the event, or an impossible date are quarantined with their reasons; the rest apply.
    """
    try:
        rows = read_csv(body)
    except OutcomeFileError as exc:
        raise ProblemError(
            422, str(exc), kind="invalid-input", errors=[FieldError(field="body", message=str(exc))]
        ) from exc
    result = record_outcomes(session, principal.org, rows, config_for(settings), principal)
    session.commit()
    return {
        "upload_id": result.upload_id,
        **result.report.summary(),
        "quarantine": result.report.quarantined,
    }


@router.get("/outcomes/quarantine", responses=problem_responses(401, 403))
def quarantined_outcomes(
    principal: ProviderKey,
    session: DbSession,
    upload_id: Annotated[str | None, Query(description="one upload only")] = None,
) -> list[dict[str, Any]]:
    """List the caller's quarantined outcome rows (newest first): the row as sent and its reasons."""
    from serving.market import as_utc
    from serving.models import OutcomeQuarantine

    query = sa.select(OutcomeQuarantine).where(OutcomeQuarantine.provider_org == principal.org)
    if upload_id is not None:
        query = query.where(OutcomeQuarantine.upload_id == upload_id)
    rows = session.scalars(query.order_by(OutcomeQuarantine.id.desc()))
    return [
        {
            "upload_id": r.upload_id,
            "row": r.row_number,
            "raw": json.loads(r.raw),
            "reason": r.reason,
            "recorded_at": as_utc(r.recorded_at),
        }
        for r in rows
    ]
