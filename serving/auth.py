"""API keys: generated once, stored as SHA-256 hashes, looked up by prefix, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from features.uscc import validate as validate_uscc
from serving.cache import invalidate
from serving.models import ROLES, ApiKey

#: Every key starts with this marker, so leaked keys are easy to find in logs and repos.
KEY_MARKER = "kx"
#: Roles whose key belongs to one firm, and roles that represent an institution.
FIRM_ROLES = frozenset({"enterprise"})


class ApiKeyError(ValueError):
    """A key cannot be created or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role, institution and (enterprise keys) firm."""

    key_id: int
    role: str
    org: str
    firm_usc: str | None


def hash_key(key: str) -> str:
    """SHA-256 of a key (keys carry 256 random bits, so a fast hash is enough)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _split(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARKER or len(parts[1]) != 12:
        return None
    return parts[1]


def create_key(
    session: Session, role: str, org: str, firm_usc: str | None = None
) -> tuple[str, ApiKey]:
    """Create an API key.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session (the caller commits).
    role : str
        One of ``serving.models.ROLES``.
    org : str
        Institution (bank, insurer, bureau) or the firm's name.
    firm_usc : str, optional
        The firm an ``enterprise`` key belongs to (required for that role, refused otherwise).

    Returns
    -------
    tuple of (str, ApiKey)
        The plaintext key (shown once, never stored) and its row.

    Raises
    ------
    ApiKeyError
        Unknown role, empty org, missing or invalid firm.
    """
    if role not in ROLES:
        raise ApiKeyError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if not org.strip():
        raise ApiKeyError("org must be a non-empty name")
    if role in FIRM_ROLES:
        if firm_usc is None:
            raise ApiKeyError(f"a {role} key needs --firm USCC")
        check = validate_uscc(firm_usc)
        if not check.valid:
            raise ApiKeyError(f"firm must be a valid USCC; {check.reason}")
    elif firm_usc is not None:
        raise ApiKeyError(f"a {role} key belongs to an institution; --firm is only for enterprise")
    prefix = secrets.token_hex(6)
    key = f"{KEY_MARKER}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        prefix=prefix,
        key_hash=hash_key(key),
        role=role,
        org=org.strip(),
        firm_usc=firm_usc,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return key, row


_KEYS = ApiKey.__table__
_KEY_BY_PREFIX = sa.select(
    _KEYS.c.id, _KEYS.c.key_hash, _KEYS.c.role, _KEYS.c.org, _KEYS.c.firm_usc, _KEYS.c.revoked_at
).where(_KEYS.c.prefix == sa.bindparam("prefix"))


def authenticate(session: Session, key: str) -> Principal | None:
    """Return the principal of a valid, unrevoked key, else None.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.
    key : str
        The presented key.

    Returns
    -------
    Principal or None
        None for a malformed, unknown or revoked key (callers answer 401 without saying which).
    """
    prefix = _split(key)
    if prefix is None:
        return None
    # A prepared Core statement on the session's connection: this runs on every request (no
    # statement building, no ORM identity-map work).
    row = session.connection().execute(_KEY_BY_PREFIX, {"prefix": prefix}).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return Principal(key_id=row.id, role=row.role, org=row.org, firm_usc=row.firm_usc)


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key at once.

    Raises
    ------
    ApiKeyError
        No key has that id.
    """
    row = session.get(ApiKey, key_id)
    if row is None:
        raise ApiKeyError(f"no API key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        invalidate(session)
    return row


def list_keys(session: Session, include_revoked: bool = False) -> list[ApiKey]:
    """Every key (newest last); revoked ones only when asked."""
    query = sa.select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))
