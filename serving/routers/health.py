"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.auth import authenticate
from serving.deps import API_KEY_HEADER
from serving.schemas import Health, Readiness, ServedInfo
from serving.state import served_info

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _database_ok(request: Request) -> tuple[bool, bool]:
    """Whether the database answers, and whether it takes a write (rolled back at once).

    The write probe takes the write lock (SQLite) or runs an UPDATE (PostgreSQL, refused in a
    read-only transaction) that matches no row; both are bounded by the engine's timeouts.
    """
    try:
        with request.app.state.db.engine.connect() as conn:
            conn.execute(sa.text("select 1"))
            conn.rollback()
    except Exception as exc:  # any failure means: not ready
        logger.warning("readiness: database unreachable: %s", type(exc).__name__)
        return False, False
    try:
        with request.app.state.db.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.execute(sa.text("UPDATE audit_head SET last_id = last_id WHERE id = -1"))
            conn.rollback()
        return True, True
    except Exception as exc:  # any failure means: writes fail, not ready
        logger.warning("readiness: database refuses writes: %s", type(exc).__name__)
        return True, False


def _is_admin(request: Request) -> bool:
    """Whether the request carries a valid admin key (never raises: readiness must answer)."""
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        return False
    try:
        with request.app.state.db.sessions() as session:
            principal = authenticate(session, key)
    except Exception:  # key store down: readiness still answers, without internals
        return False
    return principal is not None and principal.role == "admin"


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> Any:
    """Readiness: a model and snapshot are served, the database answers and takes writes, and no
    audit write failed recently (503 otherwise). Paths and the last reload error: admins only.
    """
    serving = request.app.state.serving
    current = serving.current
    database, writable = await run_in_threadpool(_database_ok, request)
    audit_ok = request.app.state.writes.healthy()
    admin = await run_in_threadpool(_is_admin, request) if database else False
    served = None
    if current is not None:
        info = served_info(current)
        if not admin:
            info.update(model_source=None, snapshot=None)
        served = ServedInfo(**info)
    body = Readiness(
        ready=current is not None and database and writable and audit_ok,
        database=database,
        database_writable=writable,
        audit_writes=audit_ok,
        served=served,
        last_error=serving.last_error if admin else None,
        reload_failed=serving.last_error is not None,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


metrics_router = APIRouter(tags=["health"])


@metrics_router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
