"""``Annotated`` dependencies: database session, caller, role and consent checks, audit.

Routers of every domain use these::

    @router.get("/firms/{usc_code}/quote")
    def quote(access: Annotated[FirmAccess, Depends(require_firm_access("quote"))], ...):
        ...
        audit_access(request, session, [access], loaded.model_version)

Dependencies without database work are ``async`` (they run on the event loop: no threadpool
hop); those that query the database are plain functions (run on the threadpool).

Checks run in this order so that nothing leaks: key (401), USCC (422), role and consent (403),
then the route's own 404 for a firm that is not in the snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from features.uscc import validate as validate_uscc
from serving.access import OWN, SCOPES, Access, hidden_fields, redact, rule_for
from serving.audit import AuditEntry, AuditUnavailableError, append
from serving.auth import Principal, authenticate
from serving.consent import active_grant
from serving.db import Database
from serving.metrics import route_template
from serving.problems import FieldError, ProblemError, field_error
from serving.settings import Settings
from serving.state import Loaded, ServingState

logger = logging.getLogger(__name__)

#: Roles that read firm data under the firm's consent.
CONSENT_ROLES = frozenset({"bank", "insurer"})
#: The header carrying the API key.
API_KEY_HEADER = "X-API-Key"

_api_key = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="API key from `kuaxin keys create`"
)


async def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    """Return the app's database."""
    return request.app.state.db


async def get_session(db: Annotated[Database, Depends(get_database)]) -> AsyncIterator[Session]:
    """Yield a session per request.

    Creating a session opens no connection, so this runs on the event loop; the first query
    (in a sync dependency or route, on the threadpool) checks a connection out of the pool.
    """
    session = db.sessions()
    try:
        yield session
    finally:
        session.close()


async def get_state(request: Request) -> ServingState:
    """Return the serving state (model and snapshot)."""
    return request.app.state.serving


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[Session, Depends(get_session)]
StateDep = Annotated[ServingState, Depends(get_state)]


def _authenticate(request: Request, session: Session, key: str | None) -> Principal:
    """Return the principal behind ``key`` (once per request; cached on ``request.state``)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    challenge = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
    if not key:
        raise ProblemError(
            401, f"missing API key: send it in the {API_KEY_HEADER} header", headers=challenge
        )
    try:
        principal = authenticate(session, key)
    except SQLAlchemyError as exc:
        logger.error("key store unavailable on %s: %s", endpoint_name(request), _brief(exc))
        raise ProblemError(
            503, "key store unavailable; try again", headers={"Retry-After": "5"}
        ) from exc
    if principal is None:
        raise ProblemError(401, "invalid or revoked API key", headers=challenge)
    request.state.principal = principal
    return principal


def _brief(exc: BaseException) -> str:
    """First line of a database error (no parameters, no SQL)."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def current_key(
    request: Request, session: DbSession, key: Annotated[str | None, Depends(_api_key)]
) -> Principal:
    """Return the caller behind the ``X-API-Key`` header; 401 when missing, unknown or revoked."""
    return _authenticate(request, session, key)


def route_rule(request: Request) -> Access | None:
    """Return the access-table entry of the matched route (None when it has none)."""
    path = route_template(request.scope)
    return rule_for(request.method, path) if path is not None else None


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(route: Any) -> frozenset[str] | None:
    """Query parameters a route declares, its dependencies' included (cached per route)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        todo = [dependant]
        while todo:  # the route's own parameters and those of every dependency below it
            dep = todo.pop()
            found.update(p.alias for p in dep.query_params)
            todo.extend(dep.dependencies)
        names = frozenset(found)
        _QUERY_NAMES[id(route)] = names
    return names


def _refuse_unknown_query(request: Request) -> None:
    """422 for a query parameter an API route does not declare (as for an unknown body field).

    Pages (outside ``/v1``) read their own query (``lang``, an id for the page's script) and
    answer no data, so they are left alone.
    """
    if not request.url.path.startswith("/v1/"):
        return
    known = _query_names(request.scope.get("route"))
    if known is None:
        return
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        errors = [
            FieldError(
                field=f"query.{name[:60]}",
                message="unknown query parameter",
                expected=", ".join(sorted(known)) or "no query parameters",
            )
            for name in unknown[:10]
        ]
        raise ProblemError(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            kind="invalid-input",
            errors=errors,
        )


async def enforce_access(request: Request, session: DbSession) -> None:
    """App-wide dependency: the access table decides who may call the matched route.

    Public entries pass on the event loop (no thread, no database); otherwise the key is checked
    on the threadpool (401) and the role must be listed (403). A route without an entry is
    refused (fail closed) and logged.
    """
    rule = route_rule(request)
    if rule is None:
        logger.error("no access-table entry for %s: refused", endpoint_name(request))
        raise ProblemError(403, "this endpoint has no access rule, so nobody may call it")
    if rule.public:
        _refuse_unknown_query(request)
        return
    principal = await run_in_threadpool(
        _authenticate, request, session, request.headers.get(API_KEY_HEADER)
    )
    _refuse_unknown_query(request)
    if rule.grant(principal.role) is None:
        allowed = ", ".join(r for r in rule.roles)
        raise ProblemError(
            403, f"role {principal.role} may not use this endpoint; allowed: {allowed}"
        )


CurrentKey = Annotated[Principal, Depends(current_key)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Build a dependency that lets only keys with one of ``roles`` through (403 otherwise)."""

    async def check(principal: CurrentKey) -> Principal:
        if principal.role not in roles:
            raise ProblemError(
                403, f"role {principal.role} may not use this endpoint; allowed: {', '.join(roles)}"
            )
        return principal

    return check


async def loaded_state(state: StateDep) -> Loaded:
    """Return the bundle being served; 503 when no model and snapshot are loaded."""
    current = state.current
    if current is None:
        raise ProblemError(
            503,
            "no model loaded: the service is not ready (see /v1/ready)",
            kind="not-ready",
            headers={"Retry-After": "30"},
        )
    return current


LoadedDep = Annotated[Loaded, Depends(loaded_state)]


def checked_uscc(usc_code: str, field: str = "path.usc_code") -> str:
    """Return ``usc_code`` if it is a valid USCC; else a 422 naming the failed check."""
    check = validate_uscc(usc_code)
    if not check.valid:
        raise field_error(
            field, f"not a valid USCC ({check.reason})", expected="18-character GB 32100 code"
        )
    return usc_code


#: The scopes an enterprise has on its own record: all of them.
OWN_SCOPES = frozenset(SCOPES)


@dataclass(frozen=True)
class FirmAccess:
    """A granted access to one firm's data (what the audit row records).

    ``scopes`` are the scopes the caller holds for the firm (its consent's, or all of them for
    the firm's own key): :meth:`redact` blanks answer fields that need another one.
    """

    principal: Principal
    usc_code: str
    purpose: str
    consent_id: int | None
    scopes: frozenset[str] = OWN_SCOPES
    rule: Access | None = None

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Blank the fields of ``payload`` this access may not see (per the access table)."""
        if self.rule is None:
            return payload
        return redact(payload, hidden_fields(self.rule, self.scopes))


def firm_access(
    session: Session, principal: Principal, usc_code: str, scope: str, rule: Access | None = None
) -> FirmAccess:
    """Decide whether ``principal`` may read ``scope`` data of ``usc_code``.

    Raises
    ------
    ProblemError
        403 for a role without firm access, another firm's enterprise key, or no active
        consent with the scope; 503 when the consent store cannot be read.
    """
    grant = rule.grant(principal.role) if rule is not None else None
    if principal.role == "enterprise" and (rule is None or grant == OWN):
        if principal.firm_usc != usc_code:
            raise ProblemError(403, "an enterprise key sees only its own firm")
        return FirmAccess(principal, usc_code, "own record", None, OWN_SCOPES, rule)
    if principal.role in CONSENT_ROLES and (rule is None or grant in SCOPES):
        scope = grant if rule is not None and grant is not None else scope
        try:
            consent = active_grant(session, usc_code, principal.org, scope)
        except SQLAlchemyError as exc:
            logger.error("consent store unavailable: %s", _brief(exc))
            raise ProblemError(
                503, "consent store unavailable; try again", headers={"Retry-After": "5"}
            ) from exc
        if consent is None:
            raise ProblemError(
                403,
                f"no active consent of firm {usc_code} to {principal.org} with scope {scope!r}",
                kind="no-consent",
            )
        consent_id, purpose, scopes = consent
        return FirmAccess(principal, usc_code, purpose, consent_id, frozenset(scopes), rule)
    raise ProblemError(403, f"role {principal.role} has no access to this firm's data here")


def require_firm_access(scope: str | None = None) -> Callable[..., FirmAccess]:
    """Build a dependency granting access to the firm in the ``usc_code`` path parameter.

    Parameters
    ----------
    scope : str, optional
        Kept for callers written before the access table; the route's entry in
        ``serving.access.TABLE`` decides the role and scope.
    """

    def check(
        request: Request,
        session: DbSession,
        key: Annotated[str | None, Depends(_api_key)],
        usc_code: Annotated[
            str, Path(description="the firm's USCC", examples=["91440300MA5FAKE00X"])
        ],
    ) -> FirmAccess:
        rule = route_rule(request)
        if rule is None:
            raise ProblemError(403, "this endpoint has no access rule, so nobody may call it")
        # The key and the consent in one threadpool call (each sync dependency is a hop).
        principal = current_key(request, session, key)
        return firm_access(session, principal, checked_uscc(usc_code), scope or "score", rule)

    return check


def require_firm_owner() -> Callable[..., Awaitable[Principal]]:
    """Build a dependency for a firm's own records (consents, access log): its key or an admin."""

    async def check(
        principal: CurrentKey,
        usc_code: Annotated[str, Path(description="the firm's USCC")],
    ) -> Principal:
        checked_uscc(usc_code)
        if principal.role == "admin" or (
            principal.role == "enterprise" and principal.firm_usc == usc_code
        ):
            return principal
        raise ProblemError(403, "only the firm itself (or an admin) may use this endpoint")

    return check


def endpoint_name(request: Request) -> str:
    """Return ``METHOD /path/{template}`` of the matched route."""
    return f"{request.method} {route_template(request.scope) or request.url.path}"


def audit_access(
    request: Request, session: Session, accesses: Sequence[FirmAccess], model_version: str
) -> None:
    """Record the accesses before any data leaves; 503 when the record cannot be written.

    Parameters
    ----------
    request : Request
    session : Session
        The request's session (committed here).
    accesses : sequence of FirmAccess
        One per firm whose data is about to be returned.
    model_version : str
        Version of the model whose output is returned.
    """
    endpoint = endpoint_name(request)
    request_id = getattr(request.state, "request_id", "")
    entries = [
        AuditEntry(
            request_id=request_id,
            key_id=a.principal.key_id,
            role=a.principal.role,
            institution=a.principal.org,
            firm_usc=a.usc_code,
            purpose=a.purpose,
            endpoint=endpoint,
            model_version=model_version,
        )
        for a in accesses
    ]
    settings = getattr(request.app.state, "settings", None)
    writes = getattr(request.app.state, "writes", None)
    try:
        append(session, entries, timeout_s=getattr(settings, "audit_timeout_s", None))
    except AuditUnavailableError as exc:
        logger.error(
            "audit write failed on %s (request %s): %s; answered 503",
            endpoint,
            request_id,
            _brief(exc.__cause__ or exc),
        )
        if writes is not None:
            writes.failed("audit")
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.audit_failures.inc()
        raise ProblemError(
            503,
            "the access could not be recorded in the audit log, so no data is returned; try again",
            kind="audit-unavailable",
            headers={"Retry-After": "5"},
        ) from exc
    if writes is not None:
        writes.succeeded()


#: An application id in a path: bounded like every other row id (32-bit on PostgreSQL).
ApplicationId = Annotated[int, Path(ge=1, le=2**31 - 1, description="application id", examples=[1])]
