"""Consents: a firm grants and revokes access; institutions list what they were granted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from sqlalchemy.exc import SQLAlchemyError

from serving.auth import Principal
from serving.consent import ConsentError, grant, list_consents, revoke, scopes_of, state_of
from serving.deps import DbSession, require_firm_owner, require_role
from serving.models import Consent
from serving.problems import ProblemError, field_error, problem_responses
from serving.schemas import MAX_ID, ConsentOut, ConsentRequest

router = APIRouter(tags=["consents"])

FirmOwner = Annotated[Principal, Depends(require_firm_owner())]


def consent_out(row: Consent) -> dict[str, Any]:
    """Show a consent row as the API does."""
    return {
        "id": row.id,
        "firm_usc": row.firm_usc,
        "institution": row.institution,
        "scopes": scopes_of(row),
        "purpose": row.purpose,
        "granted_at": row.granted_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "state": state_of(row).value,
    }


def _commit(session: DbSession) -> None:
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise ProblemError(503, "consent store unavailable; try again") from exc


@router.post(
    "/firms/{usc_code}/consents",
    response_model=ConsentOut,
    status_code=201,
    responses=problem_responses(401, 403, 422, 503),
)
def grant_consent(
    usc_code: str, body: ConsentRequest, principal: FirmOwner, session: DbSession
) -> dict[str, Any]:
    """Grant an institution access to this firm's data (the firm's own key, or admin)."""
    try:
        row = grant(
            session,
            usc_code,
            body.institution,
            list(body.scopes),
            body.purpose,
            body.expires_at,
            granted_by=principal.key_id,
        )
    except ConsentError as exc:
        message = str(exc)
        field = next(
            (
                f"body.{f}"
                for f in ("expires_at", "institution", "scopes", "purpose")
                if message.startswith(f)
            ),
            "body",
        )
        raise field_error(field, str(exc)) from exc
    _commit(session)
    return consent_out(row)


@router.get(
    "/firms/{usc_code}/consents",
    response_model=list[ConsentOut],
    responses=problem_responses(401, 403, 422),
)
def firm_consents(usc_code: str, principal: FirmOwner, session: DbSession) -> list[dict[str, Any]]:
    """Every consent this firm has granted, with its state now."""
    return [consent_out(r) for r in list_consents(session, firm_usc=usc_code)]


@router.delete(
    "/firms/{usc_code}/consents/{consent_id}",
    response_model=ConsentOut,
    responses=problem_responses(401, 403, 404, 422),
)
def revoke_consent(
    usc_code: str,
    consent_id: Annotated[int, Path(ge=1, le=MAX_ID, description="the consent's id")],
    principal: FirmOwner,
    session: DbSession,
) -> dict[str, Any]:
    """Revoke a consent at once."""
    try:
        row = revoke(session, consent_id, firm_usc=usc_code)
    except ConsentError as exc:
        raise ProblemError(404, str(exc)) from exc
    _commit(session)
    return consent_out(row)


@router.get("/consents", response_model=list[ConsentOut], responses=problem_responses(401, 403))
def my_consents(
    principal: Annotated[Principal, Depends(require_role("bank", "insurer"))], session: DbSession
) -> list[dict[str, Any]]:
    """Consents granted to the caller's institution."""
    return [consent_out(r) for r in list_consents(session, institution=principal.org)]
