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
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Path, Request

# FastAPI's own rule for a parameter read as several values (``getlist``), so a repeated
# one-value parameter is refused by the same test FastAPI parses it with.
from fastapi._compat import field_annotation_is_sequence
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from features.uscc import validate as validate_uscc
from serving.access import OWN, SCOPES, Access, hidden_fields, redact, rule_for
from serving.audit import AuditEntry, AuditUnavailableError, append, append_async
from serving.auth import Principal, authenticate, hash_key
from serving.cache import MAX_ENTRIES, AccessCache, MissLoader, not_expired
from serving.consent import Grant, active_grant, active_grants
from serving.db import SESSION_KEY, Database
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


def request_session(request: Request) -> Session:
    """Return the request's session, created on first use (one per request).

    Creating a session opens no connection, so this may run on the event loop; the first query
    (in a sync dependency or route, on the threadpool) checks a connection out of the pool.
    :class:`serving.metrics.RequestContextMiddleware` closes it through
    :func:`serving.db.close_session` once the answer is sent.
    """
    state = request.scope.setdefault("state", {})
    session = state.get(SESSION_KEY)
    if session is None:
        session = state[SESSION_KEY] = request.app.state.db.sessions()
    return session


async def get_session(request: Request) -> Session:
    """Dependency form of :func:`request_session`.

    A plain dependency, not a generator (a generator dependency costs every request an exit
    stack). The access checks call :func:`request_session` only on a cache miss, so a request
    answered from the caches never builds a session.
    """
    return request_session(request)


async def get_state(request: Request) -> ServingState:
    """Return the serving state (model and snapshot)."""
    return request.app.state.serving


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbSession = Annotated[Session, Depends(get_session)]
StateDep = Annotated[ServingState, Depends(get_state)]


def _key_cache(request: Request) -> AccessCache[Principal]:
    cache = getattr(request.app.state, "key_cache", None)
    return cache if cache is not None else _NO_CACHE


_NO_CACHE: AccessCache[Any] = AccessCache(0)
#: Where the request's checked principal is kept in its state.
_PRINCIPAL = "principal"
_CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}


def _state(request: Request) -> dict[str, Any]:
    """Return the request's state: the plain dict in its scope.

    ``request.state`` builds an object per request and raises inside ``getattr`` for every
    attribute not set yet; the hot path reads the dict.
    """
    return cast(dict[str, Any], request.scope.setdefault("state", {}))


def _cached_principal(request: Request, key: str | None) -> Principal | None:
    """Return the principal of this request or of ``key`` in the key cache (None: ask the DB)."""
    state = _state(request)
    cached = state.get(_PRINCIPAL)
    if cached is not None or not key:
        return cast(Principal | None, cached)
    principal = _key_cache(request).peek(hash_key(key))
    if principal is not None:
        state[_PRINCIPAL] = principal
    return principal


def _authenticate(request: Request, session: Session, key: str | None) -> Principal:
    """Return the principal behind ``key``; 401 when missing, unknown or revoked.

    Looked up once per request (kept in the request's state) and reused for ``auth_cache_s`` from
    the worker's key cache.
    """
    cached = _cached_principal(request, key)
    if cached is not None:
        return cached
    if not key:
        raise ProblemError(
            401, f"missing API key: send it in the {API_KEY_HEADER} header", headers=_CHALLENGE
        )
    try:
        principal = _key_cache(request).get(hash_key(key), lambda: authenticate(session, key))
    except SQLAlchemyError as exc:
        logger.error("key store unavailable on %s: %s", endpoint_name(request), _brief(exc))
        raise ProblemError(
            503, "key store unavailable; try again", headers={"Retry-After": "5"}
        ) from exc
    if principal is None:
        raise ProblemError(401, "invalid or revoked API key", headers=_CHALLENGE)
    _state(request)[_PRINCIPAL] = principal
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


_QUERY_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _query_names(route: Any) -> tuple[frozenset[str], frozenset[str]] | None:
    """Query parameters a route declares (its dependencies' included) and the one-value ones.

    Cached per route.
    """
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        found: set[str] = set()
        single: set[str] = set()
        todo = [dependant]
        while todo:  # the route's own parameters and those of every dependency below it
            dep = todo.pop()
            for p in dep.query_params:
                found.add(p.alias)
                if not field_annotation_is_sequence(p.field_info.annotation):
                    single.add(p.alias)
            todo.extend(dep.dependencies)
        names = (frozenset(found), frozenset(single))
        _QUERY_NAMES[id(route)] = names
    return names


def _refuse_unknown_query(request: Request) -> None:
    """422 for a query parameter an API route does not declare (as for an unknown body field).

    Pages (outside ``/v1``) read their own query (``lang``, an id for the page's script) and
    answer no data, so they are left alone.
    """
    if not request.scope.get("query_string") or not request.scope["path"].startswith("/v1/"):
        return  # no query at all (most calls): nothing to parse
    declared = _query_names(request.scope.get("route"))
    if declared is None:
        return
    known, single = declared
    given = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(given) - known)
    # A one-value parameter given twice would silently be read as its last value.
    repeated = sorted(name for name in single if given[name] > 1)
    if unknown or repeated:
        errors = [
            FieldError(
                field=f"query.{name[:60]}",
                message="unknown query parameter",
                expected=", ".join(sorted(known)) or "no query parameters",
            )
            for name in unknown[:10]
        ] + [
            FieldError(field=f"query.{name}", message="given more than once", expected="one value")
            for name in repeated[:10]
        ]
        raise ProblemError(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            kind="invalid-input",
            errors=errors,
        )


async def enforce_access(request: Request) -> None:
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
    key = request.headers.get(API_KEY_HEADER)
    # A key checked within ``auth_cache_s`` passes on the event loop (no thread, no database).
    principal = _cached_principal(request, key)
    if principal is None:
        session = request_session(request)
        principal = await run_in_threadpool(_released, _authenticate, request, session, key)
    _refuse_unknown_query(request)
    if rule.grant(principal.role) is None:
        allowed = ", ".join(r for r in rule.roles)
        raise ProblemError(
            403, f"role {principal.role} may not use this endpoint; allowed: {allowed}"
        )


T = TypeVar("T")


def _released(check: Callable[..., T], request: Request, session: Session, *args: Any) -> T:
    """Run a database check, then end the session's read transaction (on the same thread).

    The connection goes back to the pool at once, and an ``async`` route's audit wait then
    needs no thread to commit it.
    """
    result = check(request, session, *args)
    if session.in_transaction():
        session.commit()
    return result


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


async def loaded_state(request: Request) -> Loaded:
    """Dependency form of :func:`served_bundle`."""
    return served_bundle(request)


def served_bundle(request: Request) -> Loaded:
    """Return the bundle being served; 503 when no model and snapshot are loaded."""
    current = request.app.state.serving.current
    if current is None:
        raise ProblemError(
            503,
            "no model loaded: the service is not ready (see /v1/ready)",
            kind="not-ready",
            headers={"Retry-After": "30"},
        )
    return current


LoadedDep = Annotated[Loaded, Depends(loaded_state)]


#: Codes already found valid: the check is pure, and a hot caller asks for the same firms.
_VALID_USCC: set[str] = set()


def checked_uscc(usc_code: str, field: str = "path.usc_code") -> str:
    """Return ``usc_code`` if it is a valid USCC; else a 422 naming the failed check."""
    if usc_code in _VALID_USCC:
        return usc_code
    check = validate_uscc(usc_code)
    if not check.valid:
        raise field_error(
            field, f"not a valid USCC ({check.reason})", expected="18-character GB 32100 code"
        )
    if len(_VALID_USCC) >= MAX_ENTRIES:  # bounded like the access caches
        _VALID_USCC.clear()
    _VALID_USCC.add(usc_code)
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


def _consent_cache(cache: AccessCache[Grant] | None) -> AccessCache[Grant]:
    return cache if cache is not None else _NO_CACHE


def _consent_scope(principal: Principal, scope: str, rule: Access | None) -> str | None:
    """Return the consent scope ``principal`` needs here (None: its role reads no consent)."""
    grant = rule.grant(principal.role) if rule is not None else None
    if principal.role in CONSENT_ROLES and (rule is None or grant in SCOPES):
        return grant if rule is not None and grant is not None else scope
    return None


def cached_firm_access(
    principal: Principal,
    usc_code: str,
    scope: str,
    rule: Access | None,
    cache: AccessCache[Grant] | None,
    refresh: Callable[[Hashable], None] | None = None,
) -> FirmAccess | None:
    """:func:`firm_access` when it needs no database: an own record or a cached live consent.

    ``refresh`` (the consent loader's, bound to ``cache``) rereads a consent due for it in the
    background (:meth:`serving.cache.AccessCache.peek`).
    """
    grant = rule.grant(principal.role) if rule is not None else None
    if principal.role == "enterprise" and (rule is None or grant == OWN):
        return firm_access(None, principal, usc_code, scope, rule)  # type: ignore[arg-type]
    needed = _consent_scope(principal, scope, rule)
    if needed is None:
        return None
    found = _consent_cache(cache).peek((usc_code, principal.org, needed), refresh)
    if found is None or not not_expired(found.expires_at):
        return None
    return FirmAccess(principal, usc_code, found.purpose, found.id, frozenset(found.scopes), rule)


def firm_access(
    session: Session,
    principal: Principal,
    usc_code: str,
    scope: str,
    rule: Access | None = None,
    cache: AccessCache[Grant] | None = None,
) -> FirmAccess:
    """Decide whether ``principal`` may read ``scope`` data of ``usc_code``.

    ``cache`` (the app's consent cache) keeps a granted consent for ``auth_cache_s``; its expiry
    is checked on every use.

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
    needed = _consent_scope(principal, scope, rule)
    if needed is not None:
        scope = needed
        try:
            consent = _consent_cache(cache).get(
                (usc_code, principal.org, scope),
                lambda: active_grant(session, usc_code, principal.org, scope),
            )
            if consent is not None and not not_expired(consent.expires_at):
                consent = active_grant(session, usc_code, principal.org, scope)
        except SQLAlchemyError as exc:
            raise _consent_store_down(exc) from exc
        return _consented(principal, usc_code, scope, rule, consent)
    raise ProblemError(403, f"role {principal.role} has no access to this firm's data here")


def _consent_store_down(exc: SQLAlchemyError) -> ProblemError:
    """Log an unreadable consent store; the 503 to raise."""
    logger.error("consent store unavailable: %s", _brief(exc))
    return ProblemError(503, "consent store unavailable; try again", headers={"Retry-After": "5"})


def _consented(
    principal: Principal, usc_code: str, scope: str, rule: Access | None, consent: Grant | None
) -> FirmAccess:
    """Return the access a consent just read grants; 403 when there is none."""
    if consent is None:
        raise ProblemError(
            403,
            f"no active consent of firm {usc_code} to {principal.org} with scope {scope!r}",
            kind="no-consent",
        )
    return FirmAccess(
        principal, usc_code, consent.purpose, consent.id, frozenset(consent.scopes), rule
    )


def _grant_of(session: Session, key: tuple[str, str, str]) -> Grant | None:
    """Read the consent of ``key`` (firm, institution, scope) for the cache loader."""
    return active_grant(session, *key)


def consent_loader(db: Database) -> MissLoader[Grant]:
    """Build the app's loader of consent-cache misses (:class:`serving.cache.MissLoader`)."""
    return MissLoader(db.sessions, _grant_of, active_grants)


class _FirmAccessCheck(APIKeyHeader):
    """The ``X-API-Key`` header and the firm-access check as one dependency.

    It is the key's security scheme (so the OpenAPI document names it as ``_api_key`` does)
    and the check itself: FastAPI resolves one dependency here, not a check with the header
    below it (every level of the tree costs a hot route a share of its time).
    """

    def __init__(self, scope: str | None) -> None:
        super().__init__(
            name=API_KEY_HEADER,
            auto_error=False,
            description=_api_key.model.description,
            scheme_name=_api_key.scheme_name,
        )
        self.scope = scope or "score"

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        usc_code: Annotated[
            str, Path(description="the firm's USCC", examples=["91440300MA5FAKE00X"])
        ],
    ) -> FirmAccess:
        """Return the caller's access to the firm (key 401, USCC 422, consent 403, 503)."""
        key = request.headers.get(API_KEY_HEADER)
        rule = route_rule(request)
        if rule is None:
            raise ProblemError(403, "this endpoint has no access rule, so nobody may call it")
        cache = getattr(request.app.state, "consent_cache", None)
        principal = _cached_principal(request, key)
        if principal is not None:
            # A cached key and consent answer on the event loop: no thread, no database.
            refresh = getattr(request.app.state, "consent_refresh", None)
            found = cached_firm_access(
                principal, checked_uscc(usc_code), self.scope, rule, cache, refresh
            )
            if found is not None:
                return found
            needed = _consent_scope(principal, self.scope, rule)
            loader = getattr(request.app.state, "consent_loader", None)
            if needed is not None and cache is not None and loader is not None:
                # A consent not asked for within auth_cache_s: read by the loader's thread,
                # awaited here (no threadpool hop, no request session).
                try:
                    consent = await loader.get(cache, (usc_code, principal.org, needed))
                except SQLAlchemyError as exc:
                    raise _consent_store_down(exc) from exc
                return _consented(principal, usc_code, needed, rule, consent)
        return await run_in_threadpool(
            _released, self._firm_access_of, request, request_session(request), key, usc_code, rule
        )

    def _firm_access_of(
        self, request: Request, session: Session, key: str | None, usc_code: str, rule: Access
    ) -> FirmAccess:
        # The key and the consent in one threadpool call.
        principal = current_key(request, session, key)
        cache = getattr(request.app.state, "consent_cache", None)
        return firm_access(session, principal, checked_uscc(usc_code), self.scope, rule, cache)


def require_firm_access(scope: str | None = None) -> Callable[..., Awaitable[FirmAccess]]:
    """Build a dependency granting access to the firm in the ``usc_code`` path parameter.

    Parameters
    ----------
    scope : str, optional
        Kept for callers written before the access table; the route's entry in
        ``serving.access.TABLE`` decides the role and scope.
    """
    return _FirmAccessCheck(scope)


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


def _audit_entries(
    request: Request, accesses: Sequence[FirmAccess], model_version: str
) -> list[AuditEntry]:
    endpoint = endpoint_name(request)
    request_id = _state(request).get("request_id", "")
    return [
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


def _audit_failed(request: Request, exc: AuditUnavailableError) -> ProblemError:
    """Log and count a failed audit write; the 503 to raise instead of the data."""
    logger.error(
        "audit write failed on %s (request %s): %s; answered 503",
        endpoint_name(request),
        _state(request).get("request_id", ""),
        _brief(exc.__cause__ or exc),
    )
    writes = getattr(request.app.state, "writes", None)
    if writes is not None:
        writes.failed("audit")
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.audit_failures.inc()
    return ProblemError(
        503,
        "the access could not be recorded in the audit log, so no data is returned; try again",
        kind="audit-unavailable",
        headers={"Retry-After": "5"},
    )


def _audit_succeeded(request: Request) -> None:
    writes = getattr(request.app.state, "writes", None)
    if writes is not None:
        writes.succeeded()


def _audit_timeout(request: Request) -> float | None:
    return getattr(getattr(request.app.state, "settings", None), "audit_timeout_s", None)


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
    entries = _audit_entries(request, accesses, model_version)
    try:
        append(session, entries, timeout_s=_audit_timeout(request))
    except AuditUnavailableError as exc:
        raise _audit_failed(request, exc) from exc
    _audit_succeeded(request)


async def audit_access_async(
    request: Request, accesses: Sequence[FirmAccess], model_version: str
) -> None:
    """:func:`audit_access` for ``async`` routes: waits for the batch without a thread.

    The request's session, if a check on a cache miss opened one, is committed first; a request
    answered from the caches has none and goes straight to the engine's writer.
    """
    entries = _audit_entries(request, accesses, model_version)
    session = (request.scope.get("state") or {}).get(SESSION_KEY)
    bind = session if session is not None else request.app.state.db.engine
    try:
        await append_async(bind, entries, timeout_s=_audit_timeout(request))
    except AuditUnavailableError as exc:
        raise _audit_failed(request, exc) from exc
    _audit_succeeded(request)


#: An application id in a path: bounded like every other row id (32-bit on PostgreSQL).
ApplicationId = Annotated[int, Path(ge=1, le=2**31 - 1, description="application id", examples=[1])]
