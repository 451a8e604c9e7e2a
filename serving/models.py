"""Database tables of the service: API keys, consents, the audit log and its chain head."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Roles a key can carry.
ROLES = ("bank", "insurer", "enterprise", "regulator", "admin")
#: What a consent can open: scores, full explanations (incl. what-if and recourse), quotes.
SCOPES = ("score", "explanation", "quote")
#: Hash the audit chain starts from.
GENESIS_HASH = "0" * 64


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware (UTC) on every database.

    SQLite keeps no offset: without this, ``2030-01-01T08:00+08:00`` would be written as
    ``08:00`` and read back as 08:00 UTC, eight hours late. Naive datetimes are refused.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert to UTC before writing (naive on SQLite, which cannot store an offset)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value.isoformat()} carries no time zone")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Consent(Base):
    """A firm's grant of access to one institution, for some scopes and a purpose, until expiry."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    institution: Mapped[str] = mapped_column(sa.String(200), index=True)
    scopes: Mapped[str] = mapped_column(sa.String(100))  # comma-separated, sorted
    purpose: Mapped[str] = mapped_column(sa.String(200))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    granted_by: Mapped[int | None] = mapped_column(sa.Integer)  # api_keys.id, or None (CLI)


class AuditLog(Base):
    """One access to firm data; ``row_hash`` chains it to its lane's row before (append-only).

    ``lane`` names the chain the row is on (migration 0004): each lane links its rows by
    ``prev_hash`` in id order and has its own head row.
    """

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_lane_id", "lane", "id"),)

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
    lane: Mapped[int] = mapped_column(sa.SmallInteger, default=1, server_default="1")


class AuditHead(Base):
    """The lock row of one audit lane (``id`` = the lane): its last row's id and hash."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(sa.Integer)
    last_hash: Mapped[str] = mapped_column(sa.String(64))


# ---------------------------------------------------------------------------------------------
# Applications, decisions, outcomes and provider-managed products (migration 0002)
# ---------------------------------------------------------------------------------------------


class Application(Base):
    """A firm's application for one product; ``frozen`` is what the provider sees, as it was.

    ``frozen`` is canonical JSON (``tradefinance.applications.canonical``) and ``frozen_sha256``
    its hash, so the record reads later exactly as it was frozen. ``decision`` holds the last
    decision (terms, conditions, information asked, notice) as JSON.
    """

    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    firm_usc: Mapped[str] = mapped_column(sa.String(18), index=True)
    provider_org: Mapped[str] = mapped_column(sa.String(200), index=True)
    product_id: Mapped[str] = mapped_column(sa.String(80))
    product_version: Mapped[int] = mapped_column(sa.Integer)
    product_kind: Mapped[str] = mapped_column(sa.String(40))
    need_ref: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    grade: Mapped[str] = mapped_column(sa.String(8))
    qualified_via_bundle: Mapped[bool] = mapped_column(sa.Boolean)
    amount_cny: Mapped[float] = mapped_column(sa.Float)
    model_version: Mapped[str] = mapped_column(sa.String(100))
    consent_id: Mapped[int | None] = mapped_column(sa.Integer)
    frozen: Mapped[str] = mapped_column(sa.Text)
    frozen_sha256: Mapped[str] = mapped_column(sa.String(64))
    decision: Mapped[str | None] = mapped_column(sa.Text)
    approved_amount_cny: Mapped[float | None] = mapped_column(sa.Float)
    disbursed_amount_cny: Mapped[float | None] = mapped_column(sa.Float)
    disbursed_on: Mapped[date | None] = mapped_column(sa.Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApplicationEvent(Base):
    """One step of an application's state machine (who, when, from, to, details)."""

    __tablename__ = "application_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        sa.ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(sa.String(40))
    from_status: Mapped[str | None] = mapped_column(sa.String(32))
    to_status: Mapped[str] = mapped_column(sa.String(32))
    key_id: Mapped[int | None] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(16))
    org: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[str | None] = mapped_column(sa.Text)


class OutcomeRecord(Base):
    """A disbursement or repayment record of an application, as the provider reported it."""

    __tablename__ = "outcome_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        sa.ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(16))
    on_date: Mapped[date] = mapped_column(sa.Date)
    amount_cny: Mapped[float | None] = mapped_column(sa.Float)
    days_past_due: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str | None] = mapped_column(sa.String(16))
    outstanding_cny: Mapped[float | None] = mapped_column(sa.Float)
    upload_id: Mapped[str | None] = mapped_column(sa.String(40))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutcomeQuarantine(Base):
    """An uploaded outcome row that failed the contract or its application, with the reasons."""

    __tablename__ = "outcome_quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_org: Mapped[str] = mapped_column(sa.String(200), index=True)
    upload_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    row_number: Mapped[int] = mapped_column(sa.Integer)
    raw: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProductVersionRow(Base):
    """A version of a provider-managed product (``spec`` null: the product is retired)."""

    __tablename__ = "product_versions"
    __table_args__ = (
        sa.UniqueConstraint("product_id", "version", name="uq_product_versions_id_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(sa.String(80), index=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    owner_org: Mapped[str] = mapped_column(sa.String(200), index=True)
    spec: Mapped[str | None] = mapped_column(sa.Text)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(sa.Integer)


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
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
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
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[int | None] = mapped_column(sa.Integer)
