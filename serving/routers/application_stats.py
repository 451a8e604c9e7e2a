"""Platform statistics of applications for the regulator (aggregates only, never a firm)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from serving.applications import config_for, now_utc, statistics_rows
from serving.auth import Principal
from serving.deps import DbSession, LoadedDep, SettingsDep, require_role
from serving.market import grades_of
from serving.problems import problem_responses
from tradefinance.application_stats import application_statistics
from tradefinance.products import FINANCING_KINDS, INSURANCE_KINDS

router = APIRouter(prefix="/regulator", tags=["regulator"])

RegulatorKey = Annotated[Principal, Depends(require_role("regulator", "admin"))]


@router.get("/applications", responses=problem_responses(401, 403, 503))
def application_statistics_endpoint(
    _: RegulatorKey, session: DbSession, settings: SettingsDep, loaded: LoadedDep
) -> dict[str, Any]:
    """Applications, approvals, rate and amount by grade and kind; time to decision; service level; bundle-only financing."""
    cfg = config_for(settings)
    return application_statistics(
        statistics_rows(session),
        grades=grades_of(loaded),
        kinds=[*FINANCING_KINDS, *INSURANCE_KINDS],
        service_level_hours=cfg.service_level_hours,
        now=now_utc(),
    )
