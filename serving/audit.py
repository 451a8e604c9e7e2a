"""The audit log: every access to firm data, hash-chained and append-only.

Each row's hash is SHA-256 over the canonical JSON of its fields and the previous row's hash,
so changing, deleting or inserting a row breaks the chain from there on. Appends are
serialised by first updating the single ``audit_head`` row (a row lock on PostgreSQL, the
database write lock on SQLite) plus a process lock, so concurrent writers cannot fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from serving.models import GENESIS_HASH, AuditHead, AuditLog

#: Fields covered by a row's hash, in this order.
HASHED_FIELDS = (
    "id",
    "ts",
    "request_id",
    "key_id",
    "role",
    "institution",
    "firm_usc",
    "purpose",
    "endpoint",
    "model_version",
    "prev_hash",
)

# One appender at a time inside a process: SQLite would otherwise answer "database is locked"
# under contention; across processes the head-row update serialises.
_APPEND_LOCK = threading.Lock()


class AuditUnavailableError(RuntimeError):
    """The audit record could not be written, so no firm data may be returned."""


@dataclass(frozen=True)
class AuditEntry:
    """What one access records (the chain fields are added on append)."""

    request_id: str
    key_id: int | None
    role: str
    institution: str
    firm_usc: str
    purpose: str
    endpoint: str
    model_version: str


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking the chain.

    Attributes
    ----------
    ok : bool
        Whether every row and the head agree.
    rows : int
        Rows checked.
    first_bad_id : int or None
        Id of the first row whose hash, link or position is wrong.
    reason : str or None
        What is wrong there.
    """

    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str | None = None


def row_hash(fields: dict[str, object]) -> str:
    """SHA-256 of the canonical JSON of a row's hashed fields (incl. the previous hash)."""
    payload = {name: fields[name] for name in HASHED_FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def append(session: Session, entries: Sequence[AuditEntry]) -> list[AuditLog]:
    """Append entries to the chain and commit.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        A session with no pending work of its own (this commits).
    entries : sequence of AuditEntry
        One per firm accessed.

    Returns
    -------
    list of AuditLog
        The written rows.

    Raises
    ------
    AuditUnavailableError
        The database refused or failed the write (the caller must not return data).
    """
    if not entries:
        return []
    try:
        with _APPEND_LOCK:
            # End any read transaction first: on SQLite (WAL) a reader whose snapshot predates
            # another writer's commit could not upgrade to a writer.
            session.commit()
            # Claiming the ids by updating the head first takes the write lock before the read.
            n = len(entries)
            claimed = session.execute(
                sa.update(AuditHead)
                .where(AuditHead.id == 1)
                .values(last_id=AuditHead.last_id + n)
                .returning(AuditHead.last_id, AuditHead.last_hash)
            ).one_or_none()
            if claimed is None:
                raise AuditUnavailableError("audit head row is missing; run `kuaxin db upgrade`")
            last_id, prev = claimed[0] - n, claimed[1]
            ts = datetime.now(UTC).isoformat(timespec="microseconds")
            rows = []
            for i, entry in enumerate(entries, start=1):
                fields: dict[str, object] = {
                    "id": last_id + i,
                    "ts": ts,
                    **asdict(entry),
                    "prev_hash": prev,
                }
                prev = row_hash(fields)
                rows.append(AuditLog(**fields, row_hash=prev))
            session.add_all(rows)
            session.execute(sa.update(AuditHead).where(AuditHead.id == 1).values(last_hash=prev))
            session.commit()
            return rows
    except AuditUnavailableError:
        session.rollback()
        raise
    except Exception as exc:  # any database failure means: no record, so no data
        session.rollback()
        raise AuditUnavailableError(f"audit log write failed: {type(exc).__name__}") from exc


def _iter_rows(session: Session, batch: int = 5000) -> Iterator[AuditLog]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                sa.select(AuditLog).where(AuditLog.id > last).order_by(AuditLog.id).limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Check the whole chain and name the first broken row.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.

    Returns
    -------
    VerifyResult
        ``ok`` when every row's hash matches its content, links to the previous row, ids run
        1, 2, 3, ... without gaps and the head points at the last row.
    """
    prev, expected_id, n = GENESIS_HASH, 1, 0
    for row in _iter_rows(session):
        n += 1
        fields = {name: getattr(row, name) for name in HASHED_FIELDS}
        if row.id != expected_id:
            return VerifyResult(False, n, row.id, f"expected row id {expected_id} (rows missing)")
        if row.prev_hash != prev:
            return VerifyResult(False, n, row.id, "prev_hash does not match the previous row")
        if row_hash(fields) != row.row_hash:
            return VerifyResult(False, n, row.id, "row_hash does not match the row's content")
        prev, expected_id = row.row_hash, expected_id + 1
    head = session.get(AuditHead, 1)
    if head is None:
        return VerifyResult(False, n, None, "audit head row is missing")
    if head.last_id != expected_id - 1 or head.last_hash != prev:
        return VerifyResult(
            False, n, expected_id, f"head points at row {head.last_id}; rows after {n} are missing"
        )
    return VerifyResult(True, n)


def access_log(
    session: Session,
    firm_usc: str,
    limit: int = 100,
    before_id: int | None = None,
    roles: Sequence[str] | None = None,
    exclude_roles: Sequence[str] = (),
) -> list[AuditLog]:
    """List accesses to one firm's data, newest first (for the firm's own view).

    ``roles`` keeps only accesses by those roles, ``exclude_roles`` drops them (e.g. the
    firm's own ``enterprise`` page views); ``before_id`` pages back from a row id.
    """
    query = sa.select(AuditLog).where(AuditLog.firm_usc == firm_usc)
    if roles:
        query = query.where(AuditLog.role.in_(list(roles)))
    if exclude_roles:
        query = query.where(AuditLog.role.not_in(list(exclude_roles)))
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit)))
