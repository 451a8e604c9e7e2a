"""The FastAPI application factory.

``create_app(settings, state)`` builds an app; nothing happens at import time. At start-up the
lifespan applies the database migrations and loads the model and snapshot (unless a prepared
:class:`~serving.state.ServingState` is passed in, as tests do).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from serving import problems
from serving.audit import writer_for
from serving.cache import AccessCache
from serving.db import Database, upgrade
from serving.deps import consent_loader, enforce_access
from serving.metrics import Metrics, RequestContextMiddleware, WriteHealth
from serving.protect import ProtectMiddleware
from serving.settings import Settings
from serving.state import LoadError, ServingState

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
#: Routers of other domains, included when their module exists. A module either exposes
#: ``register(app)`` (full control, e.g. the portal's pages and static files) or a ``router``
#: mounted under ``/v1``.
OPTIONAL_ROUTERS = (
    "matching",
    "insurance",
    "regulator",
    "portal",
    "docs",
    "applications",
    "provider_applications",
    "provider_products",
    "application_stats",
    "console",
    "buyers",
    "insurer",
    "insurer_console",
)

DESCRIPTION = """
Kuaxin (跨信) scores Shenzhen cross-border e-commerce firms for banks and insurers, and shows
firms what others see about them.

* **Keys**: send `X-API-Key: <key>` (create keys with `kuaxin keys create`).
* **Consent**: a bank or insurer sees a firm only under an active consent the firm granted
  (scope `score`, `explanation` or `quote`); an enterprise key sees only its own firm; regulators
  see aggregates only.
* **Audit**: every access to firm data is recorded before the data is returned; if it cannot
  be recorded the answer is 503 and no data leaves.
* **Errors** are RFC 9457 problem details (`application/problem+json`) naming the field and
  what was expected.
"""


def _optional_router(name: str) -> ModuleType | None:
    module = f"serving.routers.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a missing dependency inside the module is a real error
            raise
        return None


def create_app(settings: Settings | None = None, state: ServingState | None = None) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to ``Settings()`` (the ``KUAXIN_*`` environment).
    state : ServingState, optional
        A prepared serving state (model and snapshot already loaded); when None the lifespan
        loads one from ``settings`` (if ``settings.load_on_start``).

    Returns
    -------
    FastAPI
    """
    settings = settings or Settings()
    preloaded = state is not None
    serving = state or ServingState()
    metrics = Metrics()
    db = Database(
        settings.database_url,
        statement_timeout_s=settings.db_statement_timeout_s,
        lock_timeout_s=settings.db_lock_timeout_s,
        connect_timeout_s=settings.db_connect_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(upgrade, settings.database_url)
        if not preloaded and settings.load_on_start:
            try:
                await run_in_threadpool(serving.load, settings)
            except LoadError:
                logger.error("starting without a model: data endpoints answer 503 until a reload")
        current = serving.current
        metrics.ready.set(1 if current is not None else 0)
        metrics.firms.set(len(current.position) if current is not None else 0)
        yield
        db.dispose()

    app = FastAPI(
        title="Kuaxin scoring service",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc come from serving.routers.docs (assets served locally, no CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # The access table (serving/access.py) decides who may call every route.
        dependencies=[Depends(enforce_access)],
    )
    app.state.settings = settings
    app.state.serving = serving
    app.state.metrics = metrics
    app.state.db = db
    # The process's audit writer of this database takes the service's batch settings.
    writer_for(db.engine, settings.audit_timeout_s, settings.audit_linger_ms / 1000)
    app.state.writes = WriteHealth(settings.ready_failure_window_s)
    app.state.key_cache = AccessCache(settings.auth_cache_s)
    app.state.consent_cache = AccessCache(settings.auth_cache_s)
    app.state.consent_loader = consent_loader(db)
    # Bound once: the hot path hands it to the cache, which calls it on a hit due for a refresh.
    app.state.consent_refresh = partial(app.state.consent_loader.refresh, app.state.consent_cache)
    problems.install(app)
    # Limits run inside the request context, so refusals carry a request id and are counted.
    app.add_middleware(ProtectMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    from serving.routers import (
        access_log,
        admin,
        consents,
        explain,
        health,
        recourse,
        scores,
        whatif,
    )

    for module in (scores, explain, whatif, recourse, consents, access_log, admin, health):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.metrics_router)
    for name in OPTIONAL_ROUTERS:
        extra = _optional_router(name)
        if extra is None:
            continue
        if hasattr(extra, "register"):
            extra.register(app)
        else:
            app.include_router(extra.router, prefix=API_PREFIX)
    _document_common_answers(app)
    return app


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app routes to a FastAPI endpoint, included routers flattened.

    HEAD (answered with GET) is left out. The access-table test walks this list.
    """
    from fastapi import routing

    iterate = getattr(routing, "iter_route_contexts", None)
    contexts = list(iterate(app.routes)) if iterate is not None else app.routes
    out = []
    for ctx in contexts:
        route = getattr(ctx, "original_route", ctx)
        path = getattr(ctx, "path", None) or getattr(route, "path", None)
        if not isinstance(route, routing.APIRoute) or path is None:
            continue
        out += [(m, path) for m in sorted((route.methods or set()) - {"HEAD"})]
    return out


def _document_common_answers(app: FastAPI) -> None:
    """Add the answers any operation can give to the OpenAPI document.

    400 (a body that is not JSON), 413 (body too large), 429 (rate limited) come from the
    middleware and the framework before a route runs; 503 from the key store on keyed routes.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        common = problems.problem_responses(400, 413, 429, 503)
        for ops in spec.get("paths", {}).values():
            for op in ops.values():
                answers = op.setdefault("responses", {})
                invalid = answers.get("422")
                if invalid is not None and problems.PROBLEM_JSON not in invalid.get("content", {}):
                    # Validation errors are answered as problem details everywhere (the app's
                    # handler), so FastAPI's default application/json 422 doc is replaced.
                    answers["422"] = {
                        "description": "Unprocessable Entity",
                        "content": {
                            problems.PROBLEM_JSON: {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    }
                for status, doc in common.items():
                    if str(status) not in answers:
                        answers[str(status)] = {
                            "description": doc["description"],
                            "content": {
                                problems.PROBLEM_JSON: {
                                    "schema": {"$ref": "#/components/schemas/Problem"}
                                }
                            },
                        }
        spec.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "Problem",
            problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}"),
        )
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
