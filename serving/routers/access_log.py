"""The firm's view of the audit log: who looked at its record, when and why."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from serving.audit import access_log
from serving.auth import Principal
from serving.deps import DbSession, require_firm_owner
from serving.problems import problem_responses
from serving.schemas import MAX_ID, AccessLog

router = APIRouter(tags=["access log"])

Role = Literal["bank", "insurer", "enterprise", "regulator", "admin"]


@router.get(
    "/firms/{usc_code}/access-log",
    response_model=AccessLog,
    responses=problem_responses(401, 403, 422),
)
def get_access_log(
    usc_code: str,
    principal: Annotated[Principal, Depends(require_firm_owner())],
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000, description="rows per page")] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_before_id of the previous page")
    ] = None,
    role: Annotated[
        list[Role] | None, Query(description="only accesses by these roles (repeatable)")
    ] = None,
    others_only: Annotated[
        bool, Query(description="leave out the firm's own reads (its enterprise keys)")
    ] = False,
) -> dict[str, Any]:
    """List accesses to this firm's data, newest first, a page at a time (the firm, or admin).

    Filter by the reader's ``role`` or leave out the firm's own page views (``others_only``);
    ``next_before_id`` is the ``before_id`` of the next page (null on the last one).
    """
    rows = access_log(
        session,
        usc_code,
        limit=limit + 1,
        before_id=before_id,
        roles=role,
        exclude_roles=("enterprise",) if others_only else (),
    )
    more = len(rows) > limit
    rows = rows[:limit]
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
        "next_before_id": rows[-1].id if more else None,
    }
