"""The audit log: every access to firm data, hash-chained and append-only, group-committed.

Each row's hash is SHA-256 over the canonical JSON of its fields and the previous row's hash,
so changing, deleting or inserting a row breaks the chain from there on. The log is a few
such chains, *lanes* (migration 0004): each row names its lane, each lane links its rows in
id order and has a head row in ``audit_head`` (its last row's id and hash) that the lane's
writers lock, so a lane never forks. SQLite has one lane (its database lock serialises
writers anyway); PostgreSQL has eight, and a writer takes the first one no other transaction
holds, so the processes of a multi-worker server commit their batches side by side instead
of queueing on one row lock for each other's durable COMMIT.

Appends are **group-committed**: a request hands its entries to the process's
:class:`AuditWriter` for its database and waits (a thread on an event, a coroutine on a
future, so an ``async`` route waits without a threadpool hop). The writer's own thread takes
every pending entry, holds a lane's head row (the row lock on PostgreSQL; on SQLite updating
the head takes the database write lock), draws the rows' ids, chains the hashes in memory,
writes one multi-row INSERT, one head update and one COMMIT, and then releases every request
of the batch; it ends after a few idle seconds and the next append starts it again. A request
returns only after its own row is durable; when the batch fails, every request in it fails
(:class:`AuditUnavailableError`, answered 503) and no row of it remains. The batch's statements
run under a lock/statement timeout (``audit_timeout_s``), so head rows locked elsewhere fail
the waiting requests in bounded time instead of hanging them. A writer running back to back
(entries arrived while it wrote) may wait ``linger_s`` (the service's ``audit_linger_ms``) for
as many entries as its last batch and their latecomers, so fewer commits carry the same rows.

The writer keeps a connection of its own while it runs (detached from the engine's pool: no
checkout or pre-ping per batch, its session-level timeouts set once) and the statements
compiled once from the tables; on PostgreSQL a batch is two round trips in pipeline mode, and
one once the writer owns a lane (an advisory lock) and knows its head (see
:class:`_WriterConnection`). The
writer thread builds no ORM objects: the async path needs none, and the blocking
:func:`append` builds its rows on the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import select
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

try:  # POSIX: SQLite writers of several processes queue on a file lock (see _WriterTurn)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

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
#: Seconds a batch may wait for the head row's lock (and run) before it fails with 503.
DEFAULT_TIMEOUT_S = 5.0
#: Most entries written in one batch (bounds one INSERT's size; the rest go in the next one).
MAX_BATCH = 2000
#: Seconds the writer thread waits for work before it ends.
IDLE_EXIT_S = 5.0
#: Seconds a busy writer may wait for a fuller batch (0: never; the service sets its own).
DEFAULT_LINGER_S = 0.0
#: PostgreSQL: the advisory lock of a lane is ``(hash of this text and the schema, lane)``
#: (advisory locks are per database, so each schema's lanes get their own); a writer holding a
#: lane's lock for its connection's life owns that lane (see :class:`_WriterConnection`).
LANE_LOCK_NAME = "kuaxin.audit_head."
#: Row ids a lane's owner draws ahead (with its lane held) per row of the batch that draws, and
#: at most: its next batches of that size need no draw, and a writer that ends (idle) leaves a
#: gap of at most this many ids, not a fixed block (ids are 32-bit).
PREFETCH_PER_ROW = 16
PREFETCH_MAX = 1024
#: Seconds after its last batch an owner still writes in one round trip without re-reading its
#: head (a longer pause starts with the two-round-trip batch, whose first statement finds a
#: connection the server dropped, so that batch is retried instead of failed).
FAST_FRESH_S = 1.0


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


#: The entry's fields, in the order the rows carry them after ``id`` and ``ts``.
_ENTRY_FIELDS = tuple(f.name for f in fields(AuditEntry))


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


@dataclass
class _Pending:
    """One request's entries waiting for their batch, and how to wake the request."""

    entries: Sequence[AuditEntry]
    event: threading.Event | None = None
    future: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
    done: bool = False
    #: The written rows' column values, in the order of ``entries``.
    values: list[dict[str, Any]] | None = None
    error: BaseException | None = None

    def wake(self) -> None:
        """Mark the request done and wake it on its own thread or event loop."""
        self.done = True
        if self.event is not None:
            self.event.set()
        if self.future is not None:
            loop, fut = self.future
            # A closed loop (shutdown) has nobody waiting on it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_done, fut)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AuditWriter:
    """The group-committing audit appender of one engine in one process.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The service database (the writer checks a connection out of its pool per batch).
    timeout_s : float
        Lock and statement timeout of a batch.
    linger_s : float
        When the writer runs back to back (entries arrived while it wrote), how long it may
        wait for as many entries as the last batch and its latecomers held, so a multi-worker
        server commits fuller batches (fewer commits per request) at the cost of that wait.
    """

    def __init__(
        self,
        engine: sa.Engine,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.linger_s = linger_s
        self._cond = threading.Condition()
        #: Entries not yet taken into a batch.
        self._queue: list[_Pending] = []
        self._thread: threading.Thread | None = None
        #: Entries arrived while the last batch was written (the writer runs back to back).
        self._busy = False
        #: The last batch's entries and those latecomers: what a lingering batch waits for.
        self._in_flight = 0
        #: The writer thread's own connection (opened by the first batch, closed when idle).
        self._conn: _WriterConnection | None = None
        #: Set by :meth:`close`: the thread ends once the queue is empty.
        self._closing = False
        #: Batches written and entries in them (what the benchmark reports).
        self.batches = 0
        self.entries = 0

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditLog]:
        """Append entries and return their rows once they are durable (blocks this thread).

        Raises
        ------
        AuditUnavailableError
            The batch holding these entries failed (nothing of it was written).
        """
        if not entries:
            return []
        mine = _Pending(entries, event=threading.Event())
        self._submit(mine)
        assert mine.event is not None
        mine.event.wait()
        # The ORM rows are built here, on the caller's thread, not on the writer's.
        return [AuditLog(**values) for values in _outcome(mine)]

    async def append_async(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries and return once they are durable (awaits; no thread; no rows built).

        Raises
        ------
        AuditUnavailableError
            The batch holding these entries failed (nothing of it was written).
        """
        if not entries:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        mine = _Pending(entries, future=(loop, fut))
        self._submit(mine)
        # Shielded: a cancelled request still waits for the batch that holds its row.
        await asyncio.shield(fut)
        _outcome(mine)

    def _submit(self, pending: _Pending) -> None:
        with self._cond:
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kuaxin-audit-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _take(self) -> list[_Pending] | None:
        """Wait for pending entries and take a batch of them (None: idle long enough, end)."""
        with self._cond:
            while not self._queue:
                if self._closing or (not self._cond.wait(IDLE_EXIT_S) and not self._queue):
                    self._thread = None
                    return None
            if self._busy and self.linger_s > 0:
                deadline = time.monotonic() + self.linger_s
                while sum(len(p.entries) for p in self._queue) < self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].entries) <= MAX_BATCH):
                item = self._queue.pop(0)
                batch.append(item)
                size += len(item.entries)
            return batch

    def _run(self) -> None:
        """Run the writer thread: batch, write, wake, until idle."""
        try:
            while (batch := self._take()) is not None:
                try:
                    values = self._write([e for p in batch for e in p.entries])
                except BaseException as exc:  # any failure fails every request of the batch
                    for p in batch:
                        p.error = exc
                else:
                    start = 0
                    for p in batch:
                        p.values = values[start : start + len(p.entries)]
                        start += len(p.entries)
                    self.batches += 1
                    self.entries += len(values)
                for p in batch:
                    p.wake()
                with self._cond:
                    waiting = sum(len(p.entries) for p in self._queue)
                    self._busy = waiting > 0
                    self._in_flight = waiting + sum(len(p.entries) for p in batch)
        finally:
            self._drop_connection()

    def close(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Write what is pending, end the thread and close its connection (a lane's lock too).

        An append after this starts the writer again.
        """
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._cond:
            self._closing = False

    def _connection(self) -> _WriterConnection:
        """Return the writer's own connection, opened (and its timeouts set) on first use."""
        ms = max(int(self.timeout_s * 1000), 1)
        conn = self._conn
        if conn is not None and conn.timeout_ms != ms:
            self._drop_connection()  # the batch timeout changed: a fresh session takes it
            conn = None
        if conn is None:
            conn = self._conn = _WriterConnection(self.engine, ms)
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _write(self, entries: list[AuditEntry]) -> list[dict[str, Any]]:
        """Claim ids, chain, insert, move the head and commit: one transaction.

        A connection found dead before anything was claimed (a restarted server) is replaced
        and the batch tried once more, which is what a pool's pre-ping did per checkout. A
        one-statement batch lost with its connection may have committed before the loss: the
        new connection looks for its last row first and writes the batch only if it is absent.
        """
        sent: list[dict[str, Any]] | None = None
        for attempt in (1, 2):
            conn = self._connection()
            try:
                if sent is not None and conn.landed(sent):
                    return sent  # the lost connection's statement had committed the batch
                return conn.write(entries)
            except _StaleConnectionError as stale:
                self._drop_connection()
                if attempt == 2:
                    raise stale.cause from None
                sent = stale.sent
            except BaseException:
                # A failed batch (rolled back) closes the connection: whatever state the failure
                # left it in (SQLite keeps locks after an I/O error), the next starts afresh.
                self._drop_connection()
                raise
        raise AssertionError("unreachable")


class _StaleConnectionError(Exception):
    """The writer's connection was lost before the batch was committed, or maybe just after.

    ``sent`` holds the rows of a one-statement batch the connection was lost in (committed
    whole or not at all, unknown which); None when nothing of the batch had been written.
    """

    def __init__(self, cause: BaseException, sent: list[dict[str, Any]] | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent


@dataclass(frozen=True)
class _Sql:
    """A statement compiled once for a dialect: its text and how to pass its parameters."""

    text: str
    defaults: dict[str, Any]
    #: Parameter names in order for a positional paramstyle (SQLite's ``?``); None if named.
    order: tuple[str, ...] | None

    @classmethod
    def of(cls, statement: sa.ClauseElement, dialect: sa.Dialect) -> _Sql:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        # The values fixed in the statement (``WHERE id = 1``); the others come per batch.
        fixed = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        return cls(str(compiled), fixed, order)

    def params(self, values: dict[str, Any]) -> Any:
        merged = {**self.defaults, **values}
        return merged if self.order is None else tuple(merged[name] for name in self.order)


class _WriterConnection:
    """The audit writer's own DBAPI connection and its three statements.

    Taken from the engine (so the engine's connect-time settings apply) and detached from its
    pool: the writer keeps it while it runs, so a batch pays no checkout and no pre-ping, and
    its session-level timeouts cannot leak to request sessions. The statements are the Core
    statements of the tables, compiled once; on PostgreSQL a batch is two round trips in
    pipeline mode (BEGIN, the lane and the ids; the INSERT, the head update and the COMMIT).

    On PostgreSQL the connection also *owns* a lane: it holds that lane's advisory lock
    (:data:`LANE_LOCK_NAME`) for its life, so no other writer of the service picks it, and
    remembers the lane's last id and hash after each batch, with ids drawn ahead while the lane
    was held (:data:`PREFETCH_PER_ROW`). The next batch is then **one round trip**: one statement
    that locks the head row only if it is free and still where this writer left it
    (``SKIP LOCKED``, last id and hash compared), moves it and inserts the rows (one JSON
    parameter), run in autocommit mode so the statement is its own durable transaction (no
    BEGIN, no COMMIT, no pipeline). When the head moved (a writer without a lane, an older
    release) or is held, that statement writes nothing and the batch takes the two-round-trip
    path, which re-reads a lane; ids drawn ahead are then dropped, so ids still rise along
    every lane.
    """

    def __init__(self, engine: sa.Engine, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        fairy = engine.raw_connection()
        fairy.detach()
        self._fairy = fairy
        self.dbapi = cast(Any, fairy.dbapi_connection)
        self.dialect = dialect = engine.dialect
        self.postgres = dialect.name == "postgresql"
        self.pipeline = self.postgres and hasattr(self.dbapi, "pipeline")  # psycopg 3
        #: PostgreSQL: the lane this connection owns (its advisory lock), None if every lane
        #: is owned by another writer; the owned lane's last id and hash as this writer left
        #: them, the ids drawn ahead for it (ascending), and when its last batch committed.
        self.lane: int | None = None
        self._head: tuple[int, str] | None = None
        self._ids: list[int] = []
        self._last_ok = 0.0
        #: Batches written in one round trip (the owner's cached head held).
        self.fast_batches = 0
        if self.postgres:
            self.claim_free = _Sql.of(_CLAIM_FREE_LANE, dialect)
            self.claim_any = _Sql.of(_CLAIM_ANY_LANE, dialect)
            self.claim_own = _Sql.of(_CLAIM_OWN_LANE, dialect)
            self.ids = _Sql.of(_NEXT_IDS, dialect)
            self.fast = _fast_append_sql(dialect)
        else:
            self.claim = _Sql.of(_CLAIM, dialect)
        self.insert = _Sql.of(sa.insert(_LOG), dialect)
        self.find = _Sql.of(_FIND_ROW, dialect)
        self.move = _Sql.of(_MOVE_HEAD, dialect)
        #: SQLite file databases: the writers of all processes queue on a file lock first.
        self._turn = _WriterTurn(None, timeout_ms)
        try:
            self._turn = _WriterTurn.of(engine, timeout_ms)
            cur = self.dbapi.cursor()
            try:
                if self.postgres:
                    # Session-level: the connection is the writer's alone. A locked head row
                    # fails the batch after the timeout instead of hanging the waiting requests.
                    cur.execute(f"SET lock_timeout = {timeout_ms}")
                    cur.execute(f"SET statement_timeout = {timeout_ms * 2}")
                    self.lane = self._own_lane(cur)
                    self.dbapi.commit()
                elif dialect.name == "sqlite":
                    cur.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            finally:
                cur.close()
        except BaseException:
            self.close()  # a detached connection that is not kept must not be left open
            raise

    def write(self, entries: list[AuditEntry]) -> list[dict[str, Any]]:
        """Write one batch and commit it (rolled back if it fails); return the rows' values."""
        with self._turn:
            try:
                if self._head is not None and time.monotonic() - self._last_ok < FAST_FRESH_S:
                    if self._server_spoke():
                        # An idle connection the server wrote to is one it is closing (a
                        # restart, a terminated backend): nothing of this batch was sent, so
                        # it is retried.
                        raise _StaleConnectionError(
                            ConnectionError("the server closed the writer's connection")
                        )
                    values = self._write_fast(entries)
                    if values is not None:
                        return values
                # The two-round-trip batch: what a lane's head says is read again first.
                self._head, self._ids = None, []
                if self.pipeline:
                    with self.dbapi.pipeline():
                        return self._write(entries)
                return self._write(entries)
            except BaseException:
                self.rollback()  # before the turn passes: the next writer finds no lock held
                raise

    def _write(self, entries: list[AuditEntry]) -> list[dict[str, Any]]:
        n = len(entries)
        cur = self.dbapi.cursor()
        try:
            try:
                lane, ids, prev = self._claim(cur, n)
            except Exception as exc:
                if self.dead(exc):
                    raise _StaleConnectionError(exc) from exc
                raise
            values = _chain(entries, lane, ids, prev)
            cur.executemany(self.insert.text, [self.insert.params(v) for v in values])
            cur.execute(
                self.move.text,
                self.move.params({"lane": lane, "last": ids[-1], "h": values[-1]["row_hash"]}),
            )
            self.dbapi.commit()
            self._committed(lane, values)
        finally:
            cur.close()
        return values

    def _write_fast(self, entries: list[AuditEntry]) -> list[dict[str, Any]] | None:
        """Write a batch on the owned lane in one round trip; None if its head is not as left.

        One statement in autocommit mode: it is its own transaction, committed (durably) when
        it ends, so the batch needs neither BEGIN nor COMMIT nor the pipeline's machinery.
        Nothing is written when the head moved (the statement's lock and move found no row).
        """
        assert self.lane is not None and self._head is not None
        n = len(entries)
        cur = self.dbapi.cursor()
        self.dbapi.autocommit = True
        try:
            if len(self._ids) < n:
                # More ids first (the ones in hand are kept: none is skipped while the head
                # stays where this writer left it); the batch is then two round trips.
                self._draw(cur, n - len(self._ids))
            return self._write_one(cur, entries)
        finally:
            cur.close()
            with contextlib.suppress(Exception):  # a lost connection is closed next anyway
                self.dbapi.autocommit = False

    def _write_one(self, cur: Any, entries: list[AuditEntry]) -> list[dict[str, Any]] | None:
        assert self.lane is not None and self._head is not None
        n = len(entries)
        last_id, last_hash = self._head
        values = _chain(entries, self.lane, self._ids[:n], last_hash)
        params: dict[str, Any] = {
            "head_lane": self.lane,
            "head_prev_id": last_id,
            "head_prev_hash": last_hash,
            "head_last_id": values[-1]["id"],
            "head_last_hash": values[-1]["row_hash"],
        }
        params["rows"] = json.dumps(values, ensure_ascii=False)
        try:
            cur.execute(self.fast, params)
        except Exception as exc:
            if self.dead(exc):
                raise _StaleConnectionError(exc, sent=values) from exc
            raise
        if cur.rowcount != n:
            return None
        del self._ids[:n]
        self.fast_batches += 1
        self._committed(self.lane, values)
        return values

    def landed(self, values: list[dict[str, Any]]) -> bool:
        """Whether the batch of ``values`` is in the log (its last row, by id and hash)."""
        last = values[-1]
        cur = self.dbapi.cursor()
        try:
            cur.execute(self.find.text, self.find.params({"id": last["id"], "h": last["row_hash"]}))
            found = cur.fetchone() is not None
            self.dbapi.commit()
        finally:
            cur.close()
        return found

    def _draw(self, cur: Any, n: int) -> None:
        """Draw ``n`` ids and as many ahead as such a batch takes, after the ids in hand."""
        cur.execute(
            self.ids.text, self.ids.params({"n": n + min(PREFETCH_MAX, PREFETCH_PER_ROW * n)})
        )
        self._ids += sorted(int(r[0]) for r in cur.fetchall())

    def _server_spoke(self) -> bool:
        """Whether the server sent something to this idle connection (a poll, no round trip)."""
        try:
            readable, _, _ = select.select([self.dbapi.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _committed(self, lane: int, values: list[dict[str, Any]]) -> None:
        """Remember the owned lane's head as this batch left it (other lanes: nothing)."""
        if lane == self.lane:
            self._head = (int(values[-1]["id"]), str(values[-1]["row_hash"]))
            self._last_ok = time.monotonic()

    def _own_lane(self, cur: Any) -> int | None:
        """Take the advisory lock of the first lane no other writer owns (None: all owned)."""
        cur.execute(f"SELECT id FROM {_HEAD.name} ORDER BY id")
        for (lane,) in cur.fetchall():
            cur.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s || current_schema()), %s)",
                (LANE_LOCK_NAME, int(lane)),
            )
            row = cur.fetchone()
            if row is not None and row[0]:
                return int(lane)
        return None

    def _claim(self, cur: Any, n: int) -> tuple[int, list[int], str]:
        """Hold a lane's head row and draw ``n`` row ids: (lane, ids in chain order, last hash).

        PostgreSQL: the first lane no other transaction holds (``SKIP LOCKED``: another
        process's batch never waits for this one's commit), else the first lane, waited for;
        ids come from the sequence *after* the lane is held, so they rise along each lane
        (ids drawn before a wait are discarded: gaps are harmless, the links prove the chain).
        SQLite: the one lane; updating its head takes the database write lock, and the ids
        continue its count.
        """
        if not self.postgres:
            cur.execute(self.claim.text, self.claim.params({"n": n}))
            claimed = cur.fetchone()
            if claimed is None:
                raise AuditUnavailableError(_NO_HEAD)
            last = int(claimed[0])
            return 1, list(range(last - n + 1, last + 1)), str(claimed[1])
        ids_cur = self.dbapi.cursor()
        try:
            head = None
            if self.lane is not None:
                # The owned lane, unless something else holds it; its ids are drawn ahead too.
                cur.execute(self.claim_own.text, self.claim_own.params({"lane": self.lane}))
                self._draw(ids_cur, n)  # in the same round trip, after the lock
                head = cur.fetchone()
                if head is not None:
                    ids, self._ids = self._ids[:n], self._ids[n:]
                    return int(head[0]), ids, str(head[2])
                self._ids = []  # drawn for a lane not held: another lane draws its own
            # In pipeline mode both statements go in one round trip; they run in this order.
            cur.execute(self.claim_free.text, self.claim_free.params({}))
            ids_cur.execute(self.ids.text, self.ids.params({"n": n}))
            head = cur.fetchone()
            if head is None:  # every lane is held: queue for the first
                cur.execute(self.claim_any.text, self.claim_any.params({}))
                head = cur.fetchone()
                if head is None:
                    raise AuditUnavailableError(_NO_HEAD)
                ids_cur.execute(self.ids.text, self.ids.params({"n": n}))
            ids = sorted(int(r[0]) for r in ids_cur.fetchall())
        finally:
            ids_cur.close()
        return int(head[0]), ids, str(head[2])

    def dead(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection is lost (the dialect's own test)."""
        dbapi_error = self.dialect.loaded_dbapi.Error
        return isinstance(exc, dbapi_error) and bool(
            self.dialect.is_disconnect(exc, self.dbapi, None)
        )

    def rollback(self) -> None:
        """Roll the failed batch back (a lost connection cannot: it is closed next)."""
        with contextlib.suppress(Exception):
            self.dbapi.rollback()

    def close(self) -> None:
        """Close the connection (it was detached: it is closed, not returned to the pool)."""
        with contextlib.suppress(Exception):
            self._fairy.close()
        self._turn.close()


class _WriterTurn:
    """Whose turn it is to write a SQLite file database's audit batch, across processes.

    SQLite makes a writer that finds the database locked sleep in growing steps (up to 100 ms
    a try), so two workers' writers taking turns wait far longer than a batch takes. Two
    exclusive ``flock`` files beside the database queue them instead, fairly: a writer takes
    the *queue* lock, then the *write* lock, and lets the queue lock go; a writer that has just
    finished must take the queue lock again, which the one waiting for the write lock holds, so
    the turn passes to it instead of going back to the same process (with one lock the writer
    that released it took it straight back, and the other process's requests waited up to
    seconds). Locks are polled (at most every millisecond) and bounded by the batch timeout,
    like the database lock. Elsewhere (PostgreSQL: the head row lock queues writers; SQLite in
    memory; no ``fcntl``) a turn is free.
    """

    def __init__(self, path: str | None, timeout_ms: int) -> None:
        self.timeout_s = timeout_ms / 1000
        self._files = (
            (open(f"{path}.queue", "a+b"), open(path, "a+b"))  # noqa: SIM115
            if path is not None
            else None
        )

    @classmethod
    def of(cls, engine: sa.Engine, timeout_ms: int) -> _WriterTurn:
        """Return the turn of ``engine``'s database (free unless it is a SQLite file)."""
        database = engine.url.database
        file_db = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        if not file_db or fcntl is None or str(database).startswith("file:"):
            return cls(None, timeout_ms)
        return cls(f"{database}-audit.lock", timeout_ms)

    def __enter__(self) -> None:
        if self._files is None or fcntl is None:
            return
        queue, write = self._files
        deadline = time.monotonic() + self.timeout_s
        _lock_by(queue, deadline)
        try:
            _lock_by(write, deadline)
        finally:
            fcntl.flock(queue, fcntl.LOCK_UN)

    def __exit__(self, *_exc: object) -> None:
        if self._files is not None and fcntl is not None:
            fcntl.flock(self._files[1], fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock files."""
        if self._files is not None:
            for f in self._files:
                f.close()
            self._files = None


def _lock_by(file: Any, deadline: float) -> None:
    """Take an exclusive ``flock`` on ``file`` before ``deadline`` (monotonic), else 503."""
    pause = 0.0001
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AuditUnavailableError(
                    "another process held the audit write turn past the timeout"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.001)


_HEAD = cast(sa.Table, AuditHead.__table__)
_LOG = cast(sa.Table, AuditLog.__table__)
#: SQLite: the one lane's head; moving its count first takes the database write lock.
_CLAIM = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(last_id=_HEAD.c.last_id + sa.bindparam("n"))
    .returning(_HEAD.c.last_id, _HEAD.c.last_hash)
)
_LANES = sa.select(_HEAD.c.id, _HEAD.c.last_id, _HEAD.c.last_hash).order_by(_HEAD.c.id).limit(1)
#: PostgreSQL: the first lane whose head row nobody holds, else (all held) the first, waited for.
_CLAIM_FREE_LANE = _LANES.with_for_update(skip_locked=True)
_CLAIM_ANY_LANE = _LANES.with_for_update()
_NEXT_IDS = sa.select(sa.Sequence("audit_log_ids").next_value()).select_from(
    sa.func.generate_series(1, sa.bindparam("n"))
)
#: PostgreSQL: a lane's owner takes its own head first, if free (else another lane).
_CLAIM_OWN_LANE = (
    sa.select(_HEAD.c.id, _HEAD.c.last_id, _HEAD.c.last_hash)
    .where(_HEAD.c.id == sa.bindparam("lane"))
    .with_for_update(skip_locked=True)
)
_MOVE_HEAD = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == sa.bindparam("lane"))
    .values(last_id=sa.bindparam("last"), last_hash=sa.bindparam("h"))
)
#: A row by id and hash (did a batch lost with its connection commit?).
_FIND_ROW = sa.select(_LOG.c.id).where(
    _LOG.c.id == sa.bindparam("id"), _LOG.c.row_hash == sa.bindparam("h")
)
_NO_HEAD = "audit head row is missing; run `kuaxin db upgrade`"


def _fast_append_sql(dialect: sa.Dialect) -> str:
    """Return the owner's one-statement batch (PostgreSQL, psycopg's ``%(name)s`` parameters).

    ``held`` locks the head row only if nobody holds it and it is where the owner left it;
    ``moved`` moves it; the rows, one JSON array of objects (one parameter: encoding it costs
    the writer a fraction of what one array per column does), are inserted only if it moved, so
    either both happen or nothing does (the statement's row count says which).
    """
    head, log = _HEAD.name, _LOG.name
    columns = ", ".join(c.name for c in _LOG.columns)
    return (
        f"WITH held AS (SELECT id FROM {head} WHERE id = %(head_lane)s"
        " AND last_id = %(head_prev_id)s AND last_hash = %(head_prev_hash)s"
        " FOR UPDATE SKIP LOCKED),"
        f" moved AS (UPDATE {head} SET last_id = %(head_last_id)s,"
        f" last_hash = %(head_last_hash)s FROM held WHERE {head}.id = held.id"
        f" RETURNING {head}.id)"
        f" INSERT INTO {log} ({columns}) SELECT {columns}"
        f" FROM json_populate_recordset(NULL::{log}, CAST(%(rows)s AS json))"
        " WHERE EXISTS (SELECT 1 FROM moved)"
    )


def _chain(
    entries: Sequence[AuditEntry], lane: int, ids: Sequence[int], prev: str
) -> list[dict[str, Any]]:
    """Return the rows of a batch on ``lane``: ids in order, each hash linked to the last."""
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    values: list[dict[str, Any]] = []
    for row_id, entry in zip(ids, entries, strict=True):
        fields: dict[str, Any] = {"id": row_id, "ts": ts}
        for name in _ENTRY_FIELDS:
            fields[name] = getattr(entry, name)
        fields["prev_hash"] = prev
        prev = fields["row_hash"] = row_hash(fields)
        fields["lane"] = lane
        values.append(fields)
    return values


def _outcome(p: _Pending) -> list[dict[str, Any]]:
    # A fresh exception per request: one object raised in many threads would share a traceback.
    if isinstance(p.error, AuditUnavailableError):
        raise AuditUnavailableError(str(p.error)) from p.error.__cause__
    if p.error is not None:
        raise AuditUnavailableError(
            f"audit log write failed: {type(p.error).__name__}: {p.error}"
        ) from p.error
    assert p.values is not None
    return p.values


_writers: weakref.WeakKeyDictionary[sa.Engine, AuditWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(
    engine: sa.Engine, timeout_s: float | None = None, linger_s: float | None = None
) -> AuditWriter:
    """Return the process's writer of ``engine`` (created on first use).

    Parameters
    ----------
    engine : sqlalchemy.Engine
    timeout_s : float, optional
        Sets the writer's batch timeout (kept for later calls that pass none).
    linger_s : float, optional
        Sets how long a busy writer waits for a fuller batch (kept likewise).
    """
    with _writers_lock:
        writer = _writers.get(engine)
        if writer is None:
            writer = AuditWriter(engine, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
            _writers[engine] = writer
        elif timeout_s is not None:
            writer.timeout_s = timeout_s
        if linger_s is not None:
            writer.linger_s = linger_s
        return writer


def close_writer(engine: sa.Engine, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """End the process's writer of ``engine``, if any (an engine's ``dispose`` calls this)."""
    with _writers_lock:
        writer = _writers.pop(engine, None)
    if writer is not None:
        writer.close(timeout_s)


def append(
    session: Session, entries: Sequence[AuditEntry], timeout_s: float | None = None
) -> list[AuditLog]:
    """Append entries to the chain through the process's group-committing writer.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        The request's session; its transaction is committed first (its own writes, if any,
        become durable; its connection returns to the pool). The rows go through the writer's
        connection.
    entries : sequence of AuditEntry
        One per firm accessed.
    timeout_s : float, optional
        Lock/statement timeout of the batch (default: the writer's, 5 s).

    Returns
    -------
    list of AuditLog
        The written rows (detached), in the order of ``entries``.

    Raises
    ------
    AuditUnavailableError
        The database refused or failed the batch (the caller must not return data).
    """
    if not entries:
        return []
    try:
        # Ends the request's transaction: its own writes become durable first (they must not
        # hold SQLite's write lock while the writer waits for it), and its pooled connection
        # goes back before the wait, so waiting requests never starve the writer of one. A
        # read-only transaction's commit replaces the rollback the session's close would send.
        if session.in_transaction():
            session.commit()
        bind = session.get_bind()
        engine = bind if isinstance(bind, sa.Engine) else bind.engine
    except Exception as exc:  # the session's own commit failed: no record, so no data
        session.rollback()
        raise AuditUnavailableError(f"audit log write failed: {type(exc).__name__}") from exc
    return writer_for(engine, timeout_s).append(entries)


async def append_async(
    bind: Session | sa.Engine, entries: Sequence[AuditEntry], timeout_s: float | None = None
) -> None:
    """:func:`append` for ``async`` routes: the wait for the batch takes no thread.

    ``bind`` is the request's session, or the engine when the request has none (answered from
    the access caches). A session's open transaction, if any, is committed on the threadpool
    first (as :func:`append` does); a session that never touched the database costs nothing.
    """
    if not entries:
        return
    if isinstance(bind, Session):
        if bind.in_transaction():
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(append, bind, entries, timeout_s)
            return
        found = bind.get_bind()
        bind = found if isinstance(found, sa.Engine) else found.engine
    await writer_for(bind, timeout_s).append_async(entries)


def _iter_rows(session: Session, lane: int, batch: int = 5000) -> Iterator[AuditLog]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                sa.select(AuditLog)
                .where(AuditLog.lane == lane, AuditLog.id > last)
                .order_by(AuditLog.id)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Check every lane's chain and name the first broken row.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session.

    Returns
    -------
    VerifyResult
        ``ok`` when, on every lane, each row's hash matches its content and links to the
        lane's previous row in id order (the first to the genesis hash), the lane's head points
        at its last row, and no row is on a lane without a head. A row deleted, inserted or
        moved breaks a link; rows cut off a lane's end disagree with its head.
    """
    heads = {h.id: (h.last_id, h.last_hash) for h in session.scalars(sa.select(AuditHead))}
    if not heads:
        return VerifyResult(False, 0, None, "audit head row is missing")
    n = 0
    for lane in sorted(heads):
        prev, last_id = GENESIS_HASH, 0
        for row in _iter_rows(session, lane):
            n += 1
            if row.prev_hash != prev:
                return VerifyResult(
                    False,
                    n,
                    row.id,
                    f"prev_hash does not match the previous row of lane {lane} "
                    "(rows missing, inserted or reordered)",
                )
            if row_hash({name: getattr(row, name) for name in HASHED_FIELDS}) != row.row_hash:
                return VerifyResult(False, n, row.id, "row_hash does not match the row's content")
            prev, last_id = row.row_hash, row.id
        head_id, head_hash = heads[lane]
        if head_id != last_id or head_hash != prev:
            return VerifyResult(
                False,
                n,
                max(head_id, last_id),
                f"lane {lane}'s head points at row {head_id} but its last row is {last_id}: "
                "rows are missing",
            )
    stray = session.scalar(
        sa.select(AuditLog.id).where(AuditLog.lane.not_in(list(heads))).order_by(AuditLog.id)
    )
    if stray is not None:
        return VerifyResult(False, n, stray, "row is on a lane that has no head row")
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
