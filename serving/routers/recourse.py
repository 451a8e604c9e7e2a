"""Recourse: the smallest plausible actionable changes that reach a target grade."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from serving.deps import (
    DbSession,
    FirmAccess,
    LoadedDep,
    SettingsDep,
    audit_access,
    require_firm_access,
)
from serving.guards import require_known, require_performing
from serving.problems import field_error, problem_responses
from serving.schemas import RecourseRequest, RecourseResponse
from serving.state import outcome
from training.recourse import find_recourse, grade_goal

router = APIRouter(tags=["what-if and recourse"])


@router.post(
    "/firms/{usc_code}/recourse",
    response_model=RecourseResponse,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def recourse(
    request: Request,
    body: RecourseRequest,
    access: Annotated[FirmAccess, Depends(require_firm_access("explanation"))],
    loaded: LoadedDep,
    session: DbSession,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Cheapest changes to actionable features (catalog bounds, steps and directions) reaching the grade.

    A firm in default gets 409 naming the default rules to cure first.
    """
    require_known(loaded, access.usc_code)
    require_performing(loaded, access.usc_code)
    grades = loaded.model.master_scale.grades
    if body.target_grade not in grades:
        raise field_error(
            "body.target_grade",
            f"unknown grade {body.target_grade!r}",
            "one of " + ", ".join(grades),
        )
    if loaded.catalog is None:
        raise field_error("path.usc_code", "no feature catalog is loaded", "a catalog", status=503)
    row = loaded.snapshot.iloc[loaded.position[access.usc_code]]
    plan = find_recourse(
        loaded.model,
        loaded.catalog,
        row,
        grade_goal(loaded.model, body.target_grade),
        scales=loaded.scales,
        max_steps=settings.recourse_max_steps,
        beam=settings.recourse_beam,
    )
    audit_access(request, session, [access], loaded.model_version)
    return {
        "usc_code": access.usc_code,
        "target_grade": body.target_grade,
        "reached": plan.reached,
        "already_met": plan.already_met,
        "before": outcome(plan.before),
        "after": outcome(plan.after),
        "changes": [asdict(c) for c in plan.changes],
        "cost": plan.cost,
        "evaluated": plan.evaluated,
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
    }
