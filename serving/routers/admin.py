"""Administration: reload the model or snapshot, verify the audit chain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from serving.audit import verify
from serving.auth import Principal
from serving.deps import DbSession, SettingsDep, StateDep, require_role
from serving.loading import model_roots, snapshot_roots, within_roots
from serving.problems import ProblemError, field_error, problem_responses
from serving.schemas import AuditVerifyResponse, ReloadRequest, ServedInfo
from serving.state import LoadError, served_info

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[Principal, Depends(require_role("admin"))]


def _allowed(field: str, value: str | None, roots: list[Path]) -> Path | None:
    """Return the path if it lies under a configured root; 422 otherwise (not any host file)."""
    if not value:
        return None
    path = within_roots(value, roots)
    if path is None:
        where = (
            ", ".join(str(r) for r in roots)
            or "none configured (KUAXIN_MODEL_ROOTS / KUAXIN_SNAPSHOT_ROOTS)"
        )
        raise field_error(
            field, f"{value} is outside the configured folders", f"a path under {where}"
        )
    return path


@router.post("/reload", response_model=ServedInfo, responses=problem_responses(401, 403, 409, 422))
async def reload(
    request: Request, body: ReloadRequest, admin: Admin, state: StateDep, settings: SettingsDep
) -> dict[str, Any]:
    """Load a model and/or snapshot and swap it in; a broken one is refused (409), the old one keeps serving."""
    metrics = request.app.state.metrics
    model_dir = _allowed("body.model_dir", body.model_dir, model_roots(settings))
    snapshot = _allowed("body.snapshot", body.snapshot, snapshot_roots(settings))
    try:
        # Scoring every firm takes seconds: off the event loop, so requests keep flowing.
        loaded = await run_in_threadpool(state.load, settings, model_dir, snapshot)
    except LoadError as exc:
        metrics.reloads.labels("refused").inc()
        raise ProblemError(
            409, f"reload refused, still serving {state.describe()}: {exc}", kind="reload-refused"
        ) from exc
    metrics.reloads.labels("ok").inc()
    metrics.firms.set(len(loaded.position))
    metrics.ready.set(1)
    return served_info(loaded)


@router.get(
    "/audit/verify", response_model=AuditVerifyResponse, responses=problem_responses(401, 403)
)
def audit_verify(admin: Admin, session: DbSession) -> dict[str, Any]:
    """Check the audit hash chain and name the first broken row."""
    result = verify(session)
    return {
        "ok": result.ok,
        "rows": result.rows,
        "first_bad_id": result.first_bad_id,
        "reason": result.reason,
    }
