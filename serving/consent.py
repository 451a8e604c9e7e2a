"""Consents: a firm opens its data to one institution, for scopes and a purpose, until expiry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from features.uscc import validate as validate_uscc
from serving.cache import invalidate
from serving.models import SCOPES, ApiKey, Consent

#: Roles whose institutions a firm may open its data to.
CONSENT_ROLES = ("bank", "insurer")


class ConsentError(ValueError):
    """A consent cannot be granted or revoked as asked (the message says why)."""


class ConsentState(StrEnum):
    """State of a consent at a moment."""

    active = "active"
    expired = "expired"
    revoked = "revoked"


def state_of(consent: Consent, now: datetime | None = None) -> ConsentState:
    """Return whether ``consent`` is active, expired or revoked at ``now``."""
    now = now or datetime.now(UTC)
    if consent.revoked_at is not None:
        return ConsentState.revoked
    if consent.expires_at <= now:
        return ConsentState.expired
    return ConsentState.active


def scopes_of(consent: Consent) -> list[str]:
    """Return the scopes a consent opens."""
    return [s for s in consent.scopes.split(",") if s]


def grant(
    session: Session,
    firm_usc: str,
    institution: str,
    scopes: list[str],
    purpose: str,
    expires_at: datetime,
    granted_by: int | None = None,
) -> Consent:
    """Record a firm's consent.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session (the caller commits).
    firm_usc : str
        The granting firm.
    institution : str
        The institution that may read: the ``org`` of an active bank or insurer API key (an
        institution without a key could never read, and a misspelt name would grant nothing).
    scopes : list of str
        Subset of ``serving.models.SCOPES``.
    purpose : str
        Why the institution reads (recorded with every access).
    expires_at : datetime
        End of the consent (timezone-aware; must lie in the future).
    granted_by : int, optional
        Id of the key that granted it (None from the CLI).

    Returns
    -------
    Consent
        The new row.

    Raises
    ------
    ConsentError
        Invalid firm, unknown scope, empty purpose, an institution without an active bank or
        insurer key, expiry not in the future.
    """
    check = validate_uscc(firm_usc)
    if not check.valid:
        raise ConsentError(f"firm must be a valid USCC; {check.reason}")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ConsentError(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {scopes}"
        )
    if not institution.strip():
        raise ConsentError("institution must be a non-empty name")
    known = known_institutions(session)
    if institution.strip() not in known:
        raise ConsentError(
            f"institution must be a bank or insurer with an active API key; got {institution!r}"
            + (f" (known: {', '.join(known)})" if known else " (none registered)")
        )
    if not purpose.strip():
        raise ConsentError("purpose must be a non-empty text")
    if expires_at.tzinfo is None:
        raise ConsentError("expires_at must carry a time zone")
    now = datetime.now(UTC)
    if expires_at <= now:
        raise ConsentError(f"expires_at must lie in the future; got {expires_at.isoformat()}")
    row = Consent(
        firm_usc=firm_usc,
        institution=institution.strip(),
        scopes=",".join(sorted(set(scopes))),
        purpose=purpose.strip(),
        granted_at=now,
        expires_at=expires_at,
        granted_by=granted_by,
    )
    session.add(row)
    session.flush()
    # A newer consent may now be the one requests read under.
    invalidate(session)
    return row


def known_institutions(session: Session) -> list[str]:
    """Institutions a firm may consent to: orgs of active bank and insurer keys, sorted."""
    rows = session.scalars(
        sa.select(ApiKey.org)
        .where(ApiKey.role.in_(CONSENT_ROLES), ApiKey.revoked_at.is_(None))
        .distinct()
    )
    return sorted(set(rows))


def revoke(session: Session, consent_id: int, firm_usc: str | None = None) -> Consent:
    """Revoke a consent at once.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session (the caller commits).
    consent_id : int
        The consent.
    firm_usc : str, optional
        When given, the consent must belong to this firm.

    Raises
    ------
    ConsentError
        No such consent (for this firm).
    """
    row = session.get(Consent, consent_id)
    if row is None or (firm_usc is not None and row.firm_usc != firm_usc):
        raise ConsentError(
            f"no consent with id {consent_id}" + (f" for firm {firm_usc}" if firm_usc else "")
        )
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        invalidate(session)
    return row


def list_consents(
    session: Session, firm_usc: str | None = None, institution: str | None = None
) -> list[Consent]:
    """Consents of a firm and/or to an institution, oldest first."""
    query = sa.select(Consent).order_by(Consent.id)
    if firm_usc is not None:
        query = query.where(Consent.firm_usc == firm_usc)
    if institution is not None:
        query = query.where(Consent.institution == institution)
    return list(session.scalars(query))


def active_consent(
    session: Session, firm_usc: str, institution: str, scope: str, now: datetime | None = None
) -> Consent | None:
    """Return the active consent of ``firm_usc`` to ``institution`` covering ``scope``, if any.

    Returns
    -------
    Consent or None
        The latest-expiring active consent with the scope.
    """
    now = now or datetime.now(UTC)
    rows = session.scalars(
        sa.select(Consent)
        .where(
            Consent.firm_usc == firm_usc,
            Consent.institution == institution,
            Consent.revoked_at.is_(None),
            Consent.expires_at > now,
        )
        .order_by(Consent.expires_at.desc())
    )
    for row in rows:
        if scope in scopes_of(row):
            return row
    return None


_CONSENTS = Consent.__table__
_ACTIVE = (
    sa.select(_CONSENTS.c.id, _CONSENTS.c.purpose, _CONSENTS.c.scopes, _CONSENTS.c.expires_at)
    .where(
        _CONSENTS.c.firm_usc == sa.bindparam("firm"),
        _CONSENTS.c.institution == sa.bindparam("institution"),
        _CONSENTS.c.revoked_at.is_(None),
        _CONSENTS.c.expires_at > sa.bindparam("now", type_=Consent.expires_at.type),
    )
    .order_by(_CONSENTS.c.expires_at.desc())
)


class Grant(NamedTuple):
    """The active consent a request reads under (what :func:`active_grant` returns)."""

    id: int
    purpose: str
    scopes: tuple[str, ...]
    expires_at: datetime


def active_grant(session: Session, firm_usc: str, institution: str, scope: str) -> Grant | None:
    """Return :func:`active_consent`'s consent as a :class:`Grant`, by one prepared statement.

    The per-request form of :func:`active_consent` (the same rows in the same order; no ORM
    object is built).
    """
    rows = session.connection().execute(
        _ACTIVE, {"firm": firm_usc, "institution": institution, "now": datetime.now(UTC)}
    )
    return _first_grant(rows, scope)


def _first_grant(rows: Iterable[Any], scope: str) -> Grant | None:
    """Return the first of ``rows`` (newest expiry first) whose scopes hold ``scope``."""
    for row in rows:
        scopes = tuple(row.scopes.split(","))
        if scope in scopes:
            return Grant(int(row.id), str(row.purpose), scopes, row.expires_at)
    return None


_ACTIVE_MANY = (
    sa.select(
        _CONSENTS.c.firm_usc,
        _CONSENTS.c.id,
        _CONSENTS.c.purpose,
        _CONSENTS.c.scopes,
        _CONSENTS.c.expires_at,
    )
    .where(
        _CONSENTS.c.firm_usc.in_(sa.bindparam("firms", expanding=True)),
        _CONSENTS.c.institution == sa.bindparam("institution"),
        _CONSENTS.c.revoked_at.is_(None),
        _CONSENTS.c.expires_at > sa.bindparam("now", type_=Consent.expires_at.type),
    )
    .order_by(_CONSENTS.c.expires_at.desc())
)


def active_grants(
    session: Session, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], Grant | None]:
    """:func:`active_grant` of many (firm, institution, scope) keys: one query per institution.

    The same answer per key as :func:`active_grant` (the same rows, newest expiry first).
    """
    wanted = list(dict.fromkeys(keys))
    by_org: dict[str, set[str]] = {}
    for firm, org, _scope in wanted:
        by_org.setdefault(org, set()).add(firm)
    now = datetime.now(UTC)
    rows_of: dict[tuple[str, str], list[Any]] = {}
    conn = session.connection()
    for org, firms in by_org.items():
        ordered = sorted(firms)
        # Chunks keep the IN list under every driver's parameter limit.
        for start in range(0, len(ordered), 900):
            params = {"firms": ordered[start : start + 900], "institution": org, "now": now}
            for row in conn.execute(_ACTIVE_MANY, params):
                rows_of.setdefault((row.firm_usc, org), []).append(row)
    return {key: _first_grant(rows_of.get(key[:2], ()), key[2]) for key in wanted}
