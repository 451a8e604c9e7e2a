"""Applications, the firm's side: apply for a product, post a need, follow, respond, withdraw.

Applying grants the product's provider a consent scoped to the application (purpose
``application <id>``) and freezes what the provider will see. Only the firm's own key (or an
admin) may use these endpoints; every answer carrying the firm's frozen record is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.applications import (
    ApplyError,
    act,
    config_for,
    conflict,
    create_application,
    detail,
    eligible_products,
    new_need_ref,
    summary,
)
from serving.auth import Principal
from serving.deps import (
    ApplicationId,
    DbSession,
    FirmAccess,
    LoadedDep,
    SettingsDep,
    audit_access,
    require_firm_owner,
)
from serving.guards import require_known
from serving.market import MarketDep, effective_products
from serving.models import Application
from serving.problems import ProblemError, field_error, problem_responses
from tradefinance.applications import TransitionError
from tradefinance.matching import Need

router = APIRouter(tags=["applications"])

FirmOwner = Annotated[Principal, Depends(require_firm_owner())]


class ApplyRequest(Need):
    """Apply for one product with a financing need."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_id": "pcb_cbec_credit_loan",
                    "amount_cny": 500000,
                    "purpose": "working_capital",
                    "tenor_months": 6,
                }
            ]
        },
    )
    product_id: str = Field(
        min_length=1, max_length=80, description="a product of GET /v1/products"
    )


class NeedRequest(Need):
    """A financing need posted to every provider whose product the firm is eligible for."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount_cny": 300000, "purpose": "inventory", "tenor_months": 6}]
        },
    )


class RespondRequest(BaseModel):
    """The firm's answer to a request for information."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000)


class ApplicationSummary(BaseModel):
    """An application in a list (no score data)."""

    model_config = ConfigDict(extra="allow")

    id: int
    firm_usc: str
    provider_org: str
    product_id: str
    status: str


class ApplicationDetail(ApplicationSummary):
    """An application with its frozen record, decision, steps and allowed actions."""

    frozen: dict[str, Any]
    frozen_sha256: str
    decision: dict[str, Any] | None
    events: list[dict[str, Any]]
    allowed_actions: list[str]
    consent_state: str


class NeedResponse(BaseModel):
    """The applications a posted need created."""

    need_ref: str
    applications: list[ApplicationDetail]


def _own(session: DbSession, usc_code: str, application_id: int) -> Application:
    app = session.get(Application, application_id)
    if app is None or app.firm_usc != usc_code:
        raise ProblemError(404, f"firm {usc_code} has no application {application_id}")
    return app


def _apply_error(exc: ApplyError) -> ProblemError:
    return field_error(exc.field, exc.message, exc.expected)


@router.post(
    "/firms/{usc_code}/applications",
    response_model=ApplicationDetail,
    status_code=201,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def apply(
    request: Request,
    usc_code: str,
    body: ApplyRequest,
    principal: FirmOwner,
    session: DbSession,
    loaded: LoadedDep,
    market: MarketDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Apply for one product: grants its provider a consent for this application and freezes its view."""
    require_known(loaded, usc_code)
    catalog = effective_products(session, market)
    try:
        app = create_application(
            session,
            loaded=loaded,
            market=market,
            catalog=catalog,
            cfg=config_for(settings),
            principal=principal,
            usc_code=usc_code,
            product_id=body.product_id,
            need=Need(**body.model_dump(exclude={"product_id"})),
        )
    except ApplyError as exc:
        session.rollback()
        raise _apply_error(exc) from exc
    out = detail(session, app, "firm")
    access = FirmAccess(principal, usc_code, f"application {app.id}", app.consent_id)
    audit_access(request, session, [access], loaded.model_version)
    return out


@router.post(
    "/firms/{usc_code}/needs",
    response_model=NeedResponse,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def post_need(
    request: Request,
    usc_code: str,
    body: NeedRequest,
    principal: FirmOwner,
    session: DbSession,
    loaded: LoadedDep,
    market: MarketDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Post a need: one application (and one consent) per product the firm is eligible for."""
    require_known(loaded, usc_code)
    catalog = effective_products(session, market)
    need = Need(**body.model_dump())
    cfg = config_for(settings)
    ids = eligible_products(session, loaded, market, catalog, cfg, usc_code, need)
    if not ids:
        raise ProblemError(
            409,
            f"firm {usc_code} is eligible for no product of a provider on the platform for "
            "this need; see POST "
            f"/v1/firms/{usc_code}/matches for what would change that",
            kind="no-eligible-product",
        )
    ref = new_need_ref()
    apps = [
        create_application(
            session,
            loaded=loaded,
            market=market,
            catalog=catalog,
            cfg=cfg,
            principal=principal,
            usc_code=usc_code,
            product_id=pid,
            need=need,
            need_ref=ref,
        )
        for pid in ids
    ]
    out = [detail(session, a, "firm") for a in apps]
    accesses = [FirmAccess(principal, usc_code, f"application {a.id}", a.consent_id) for a in apps]
    audit_access(request, session, accesses, loaded.model_version)
    return {"need_ref": ref, "applications": out}


@router.get(
    "/firms/{usc_code}/applications",
    response_model=list[ApplicationSummary],
    responses=problem_responses(401, 403, 422),
)
def list_applications(
    usc_code: str, principal: FirmOwner, session: DbSession
) -> list[dict[str, Any]]:
    """List the firm's applications, newest first, with their status."""
    rows = session.scalars(
        sa.select(Application)
        .where(Application.firm_usc == usc_code)
        .order_by(Application.id.desc())
    )
    return [summary(a) for a in rows]


@router.get(
    "/firms/{usc_code}/applications/{application_id}",
    response_model=ApplicationDetail,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def get_application(
    request: Request,
    usc_code: str,
    application_id: ApplicationId,
    principal: FirmOwner,
    session: DbSession,
) -> dict[str, Any]:
    """One application: status, steps, the decision with its terms or adverse-action notice."""
    app = _own(session, usc_code, application_id)
    out = detail(session, app, "firm")
    access = FirmAccess(principal, usc_code, "own record", None)
    audit_access(request, session, [access], app.model_version)
    return out


def _firm_action(
    request: Request,
    session: DbSession,
    principal: Principal,
    usc_code: str,
    application_id: ApplicationId,
    action: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    app = _own(session, usc_code, application_id)
    try:
        act(session, app, action, principal, details)
    except TransitionError as exc:
        session.rollback()
        raise conflict(exc, "firm") from exc
    session.flush()
    out = detail(session, app, "firm")
    access = FirmAccess(principal, usc_code, "own record", None)
    audit_access(request, session, [access], app.model_version)
    return out


@router.post(
    "/firms/{usc_code}/applications/{application_id}/withdraw",
    response_model=ApplicationDetail,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def withdraw(
    request: Request,
    usc_code: str,
    application_id: ApplicationId,
    principal: FirmOwner,
    session: DbSession,
) -> dict[str, Any]:
    """Withdraw an application; the consent it granted is revoked at once."""
    return _firm_action(request, session, principal, usc_code, application_id, "withdraw", None)


@router.post(
    "/firms/{usc_code}/applications/{application_id}/respond",
    response_model=ApplicationDetail,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def respond(
    request: Request,
    usc_code: str,
    application_id: ApplicationId,
    body: RespondRequest,
    principal: FirmOwner,
    session: DbSession,
) -> dict[str, Any]:
    """Answer a request for information; the application goes back under review."""
    return _firm_action(
        request, session, principal, usc_code, application_id, "respond", {"note": body.note}
    )
