"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.schemas import Health, Readiness, ServedInfo
from serving.state import served_info

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _database_ok(request: Request) -> bool:
    try:
        with request.app.state.db.engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except Exception:  # any failure means: not ready
        return False


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> Any:
    """Readiness: a model and snapshot are served and the database answers (503 otherwise)."""
    serving = request.app.state.serving
    current = serving.current
    database = await run_in_threadpool(_database_ok, request)
    body = Readiness(
        ready=current is not None and database,
        database=database,
        served=ServedInfo(**served_info(current)) if current is not None else None,
        last_error=serving.last_error,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


metrics_router = APIRouter(tags=["health"])


@metrics_router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
