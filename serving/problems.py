"""RFC 9457 problem details: every error answer says what is wrong and, for input, where.

Bodies are ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``,
``instance`` and, for invalid input, ``errors``: one entry per field with ``field`` (a dotted
path such as ``body.changes.refund_rate_6m``), ``message`` and ``expected`` when known.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Base of the ``type`` URIs (documented in the README; not dereferenced by clients).
TYPE_BASE = "https://kuaxin.example/problems/"


class FieldError(BaseModel):
    """One invalid input field."""

    model_config = ConfigDict(extra="forbid")

    field: str
    message: str
    expected: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem-details body."""

    model_config = ConfigDict(extra="forbid")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise to answer with a problem-details body.

    Parameters
    ----------
    status : int
        HTTP status.
    detail : str
        What is wrong, for a human.
    kind : str, optional
        Last part of the ``type`` URI (default: from the status, e.g. ``forbidden``).
    errors : list of FieldError, optional
        Field-level errors.
    headers : dict, optional
        Extra response headers (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        kind: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _slug(status)
        self.errors = errors
        self.headers = headers


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def field_error(
    field: str, message: str, expected: str | None = None, status: int = 422
) -> ProblemError:
    """Build a 422 (or other) problem about one input field."""
    return ProblemError(
        status,
        f"{field}: {message}",
        kind="invalid-input",
        errors=[FieldError(field=field, message=message, expected=expected)],
    )


def problem_response(request: Request, exc: ProblemError) -> JSONResponse:
    """Render a problem as ``application/problem+json``."""
    body = Problem(
        type=TYPE_BASE + exc.kind,
        title=_title(exc.status),
        status=exc.status,
        detail=exc.detail,
        instance=request.url.path,
        errors=exc.errors,
    )
    headers = dict(exc.headers or {})
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=exc.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _expected(err: dict[str, Any]) -> str | None:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    for key in ("ge", "gt", "le", "lt", "max_length", "min_length", "pattern"):
        if key in ctx:
            return f"{key} {ctx[key]}"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "no such field"
    if kind == "missing":
        return "a value"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return kind.split("_")[0]
    return None


def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        FieldError(
            field=".".join(str(p) for p in err.get("loc", ())),
            message=str(err.get("msg", "invalid")),
            expected=_expected(err),
        )
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    return problem_response(request, ProblemError(422, detail, kind="invalid-input", errors=errors))


def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem_response(
        request,
        ProblemError(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)),
    )


def _problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(request, exc)


def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path)
    return problem_response(request, ProblemError(500, "internal error; see the service log"))


def install(app: FastAPI) -> None:
    """Register the problem-details handlers on ``app``."""
    app.add_exception_handler(ProblemError, _problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)


#: OpenAPI ``responses`` entries for the problem bodies routes can answer with.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response docs for the given error statuses."""
    return {
        s: {"model": Problem, "description": _title(s), "content": {PROBLEM_JSON: {}}}
        for s in statuses
    }
