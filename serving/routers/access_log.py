"""The firm's view of the audit log: who looked at its record, when and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from serving.audit import access_log
from serving.auth import Principal
from serving.deps import DbSession, require_firm_owner
from serving.problems import problem_responses
from serving.schemas import MAX_ID, AccessLog

router = APIRouter(tags=["access log"])


@router.get(
    "/firms/{usc_code}/access-log",
    response_model=AccessLog,
    responses=problem_responses(401, 403, 422),
)
def get_access_log(
    usc_code: str,
    principal: Annotated[Principal, Depends(require_firm_owner())],
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    """List accesses to this firm's data, newest first (the firm's own key, or admin)."""
    rows = access_log(session, usc_code, limit=limit, before_id=before_id)
    return {
        "usc_code": usc_code,
        "records": [
            {
                "id": r.id,
                "time": r.ts,
                "institution": r.institution,
                "role": r.role,
                "purpose": r.purpose,
                "endpoint": r.endpoint,
                "model_version": r.model_version,
                "request_id": r.request_id,
            }
            for r in rows
        ],
        "next_before_id": rows[-1].id if len(rows) == limit else None,
    }
