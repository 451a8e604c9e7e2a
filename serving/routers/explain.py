"""Full explanation of a firm's score (precomputed at load)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from serving.deps import DbSession, FirmAccess, LoadedDep, audit_access, require_firm_access
from serving.guards import require_known
from serving.problems import problem_responses
from serving.schemas import Explanation

router = APIRouter(tags=["explanations"])


@router.get(
    "/firms/{usc_code}/explanation",
    response_model=Explanation,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def get_explanation(
    request: Request,
    access: Annotated[FirmAccess, Depends(require_firm_access("explanation"))],
    loaded: LoadedDep,
    session: DbSession,
) -> dict[str, Any]:
    """Every feature's contribution, the base value and the peer percentile in the industry."""
    require_known(loaded, access.usc_code)
    payload = loaded.explanation_payload(access.usc_code)
    audit_access(request, session, [access], loaded.model_version)
    return payload
