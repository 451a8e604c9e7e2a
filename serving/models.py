"""Database tables of the service: API keys, consents, the audit log and its chain head."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Roles a key can carry.
ROLES = ("bank", "insurer", "enterprise", "regulator", "admin")
#: What a consent can open: scores, full explanations (incl. what-if and recourse), quotes.
SCOPES = ("score", "explanation", "quote")
#: Hash the audit chain starts from.
GENESIS_HASH = "0" * 64


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class ApiKey(Base):
    """An API key: only its SHA-256 hash is stored; the prefix finds it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(16))
    org: Mapped[str] = mapped_column(sa.String(200), index=True)
    firm_usc: Mapped[str | None] = mapped_column(sa.String(18), index=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Consent(Base):
    """A firm's grant of access to one institution, for some scopes and a purpose, until expiry."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    institution: Mapped[str] = mapped_column(sa.String(200), index=True)
    scopes: Mapped[str] = mapped_column(sa.String(100))  # comma-separated, sorted
    purpose: Mapped[str] = mapped_column(sa.String(200))
    granted_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    granted_by: Mapped[int | None] = mapped_column(sa.Integer)  # api_keys.id, or None (CLI)


class AuditLog(Base):
    """One access to firm data; ``row_hash`` chains it to the row before (append-only)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(sa.String(32))  # ISO-8601 UTC text: hashes the same everywhere
    request_id: Mapped[str] = mapped_column(sa.String(64))
    key_id: Mapped[int | None] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(16))
    institution: Mapped[str] = mapped_column(sa.String(200))
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(200))
    endpoint: Mapped[str] = mapped_column(sa.String(200))
    model_version: Mapped[str] = mapped_column(sa.String(100))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    row_hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(Base):
    """The single lock row of the audit chain: last id and hash (appends update it first)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(sa.Integer)
    last_hash: Mapped[str] = mapped_column(sa.String(64))


class BuyerLimitDecision(Base):
    """One decided buyer-limit request: the latest row per (insurer, firm, buyer) is in force."""

    __tablename__ = "buyer_limit_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    insurer: Mapped[str] = mapped_column(sa.String(200), index=True)
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    buyer_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    country_iso3: Mapped[str] = mapped_column(sa.String(3))
    requested_usd: Mapped[float] = mapped_column(sa.Float)
    granted_usd: Mapped[float] = mapped_column(sa.Float)
    decision: Mapped[str] = mapped_column(sa.String(16))
    reason_code: Mapped[str] = mapped_column(sa.String(40))
    buyer_grade: Mapped[str] = mapped_column(sa.String(16))
    grade_as_of: Mapped[str | None] = mapped_column(sa.String(32))
    decided_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    key_id: Mapped[int | None] = mapped_column(sa.Integer)


class ClaimNoticeRow(Base):
    """An exporter's notice of non-payment to an insurer (assessed again whenever read)."""

    __tablename__ = "claim_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    insurer: Mapped[str] = mapped_column(sa.String(200), index=True)
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    policy_id: Mapped[str] = mapped_column(sa.String(40))
    buyer_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    due_date: Mapped[str] = mapped_column(sa.String(10))  # ISO dates: same text on every database
    notified_date: Mapped[str] = mapped_column(sa.String(10))
    loss_usd: Mapped[float] = mapped_column(sa.Float)
    cover: Mapped[float] = mapped_column(sa.Float)
    approved_limit_usd: Mapped[float] = mapped_column(sa.Float)
    country_category: Mapped[str] = mapped_column(sa.String(4))
    filed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    key_id: Mapped[int | None] = mapped_column(sa.Integer)
