"""What-if: a firm's PD, score and grade after changing actionable features (live model call)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from serving.deps import DbSession, FirmAccess, LoadedDep, audit_access, require_firm_access
from serving.guards import require_known, require_performing
from serving.problems import FieldError, ProblemError, problem_responses
from serving.schemas import WhatIfRequest, WhatIfResponse
from serving.state import Loaded, outcome, plain
from training.recourse import ChangeError, check_change

router = APIRouter(tags=["what-if and recourse"])


def actionable_features(loaded: Loaded) -> list[str]:
    """Actionable catalog features the served model uses."""
    if loaded.catalog is None:
        return []
    used = set(loaded.model.feature_names)
    return [f for f in loaded.catalog.actionable if f in used]


def validated_changes(loaded: Loaded, changes: dict[str, Any]) -> dict[str, Any]:
    """Coerce requested changes; 422 naming every bad feature and what it expects."""
    allowed = set(actionable_features(loaded))
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for feature, value in changes.items():
        where = f"body.changes.{feature}"
        if feature not in allowed:
            errors.append(
                FieldError(
                    field=where,
                    message="not an actionable feature of the served model",
                    expected="one of " + ", ".join(sorted(allowed)),
                )
            )
            continue
        try:
            values[feature] = check_change(loaded.catalog[feature], value)  # type: ignore[index]
        except ChangeError as exc:
            errors.append(FieldError(field=where, message=exc.message, expected=exc.expected))
    if errors:
        raise ProblemError(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            kind="invalid-input",
            errors=errors,
        )
    return values


@router.post(
    "/firms/{usc_code}/what-if",
    response_model=WhatIfResponse,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def what_if(
    request: Request,
    body: WhatIfRequest,
    access: Annotated[FirmAccess, Depends(require_firm_access("explanation"))],
    loaded: LoadedDep,
    session: DbSession,
) -> dict[str, Any]:
    """PD, score and grade after changing actionable features (scored live by the model).

    A firm in default gets 409: its served grade is D whatever the model says, so a model
    what-if would show a performing grade it cannot have until the default is cured.
    """
    require_known(loaded, access.usc_code)
    require_performing(loaded, access.usc_code)
    values = validated_changes(loaded, body.changes)
    row = loaded.features_of(access.usc_code)
    after = loaded.what_if(access.usc_code, values)
    before = loaded.scores.iloc[loaded.position[access.usc_code]]
    audit_access(request, session, [access], loaded.model_version)
    return {
        "usc_code": access.usc_code,
        "before": outcome(before),
        "after": outcome(after),
        "changes": [
            {"feature": f, "before": plain(row[f].iat[0]), "after": v} for f, v in values.items()
        ],
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
    }
