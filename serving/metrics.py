"""Prometheus metrics and the request-id middleware (pure ASGI, so it adds little latency)."""

from __future__ import annotations

import re
import time
from random import getrandbits
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.db import close_session

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Method label values: anything else is counted as ``other`` (no new series per method name).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Return the metric label of an HTTP method: itself when standard, else ``other``."""
    return method if method in METHODS else "other"


class WriteHealth:
    """When database writes last failed and succeeded (readiness reads it).

    Parameters
    ----------
    window_s : float
        How long a failure keeps the service not ready unless a later write succeeded.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.last_failure: float | None = None
        self.last_success: float | None = None
        self.last_failure_what: str | None = None

    def failed(self, what: str) -> None:
        """Record a failed write (``what``: e.g. ``audit``)."""
        self.last_failure = time.monotonic()
        self.last_failure_what = what

    def succeeded(self) -> None:
        """Record a successful write."""
        self.last_success = time.monotonic()

    def healthy(self) -> bool:
        """Return False while the last failure is recent and no write succeeded after it."""
        if self.last_failure is None:
            return True
        if self.last_success is not None and self.last_success > self.last_failure:
            return True
        return time.monotonic() - self.last_failure > self.window_s


#: Where :func:`route_template` keeps its answer in the scope (asked several times a request).
_TEMPLATE_KEY = "kuaxin.route_template"


def route_template(scope: Scope) -> str | None:
    """Return the matched route as a template (``/v1/firms/{usc_code}/score``), None if unmatched.

    Built from the request path and its path parameters, so it includes router prefixes
    whatever the framework's internal route objects hold. Kept in the scope for the endpoint it
    was built for (the access checks, the audit row and the metrics all ask).
    """
    route, endpoint = scope.get("route"), scope.get("endpoint")
    if route is None and endpoint is None:
        return None
    kept = scope.get(_TEMPLATE_KEY)
    if kept is not None and kept[0] is route and kept[1] is endpoint:
        return cast(str, kept[2])
    params = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    parts = [("{" + params[p] + "}") if p in params else p for p in scope["path"].split("/")]
    template = "/".join(parts)
    scope[_TEMPLATE_KEY] = (route, endpoint, template)
    return template


class Metrics:
    """The service's metrics, on a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kuaxin_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kuaxin_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "kuaxin_audit_failures_total",
            "Firm-data requests refused because the audit record could not be written",
            registry=self.registry,
        )
        self.reloads = Counter(
            "kuaxin_reloads_total",
            "Model/snapshot reloads by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.firms = Gauge(
            "kuaxin_firms_loaded", "Firms scored in the served snapshot", registry=self.registry
        )
        self.ready = Gauge(
            "kuaxin_ready", "1 when a model and snapshot are served", registry=self.registry
        )


class RequestContextMiddleware:
    """Give every request an id (``X-Request-ID`` in and out) and record its metrics.

    Parameters
    ----------
    app : ASGIApp
    metrics : Metrics
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        # 32 random hex digits, as a uuid4's hex. A correlation id, not a secret: the process's
        # generator (reseeded in every forked or spawned worker) instead of a getrandom system
        # call per request, which cost 6 % of a loaded worker's event loop.
        request_id = incoming if _REQUEST_ID.match(incoming) else f"{getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers.append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The request's database session (serving.deps.get_session) ends with the request.
            close_session(scope)
            path = route_template(scope) or "unmatched"
            method = method_label(scope.get("method", ""))
            self.metrics.requests.labels(method, path, str(status[0])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)
