"""Group commit of the audit log: batching, all-or-nothing batches, bounded waits, processes."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.audit import (
    PREFETCH_PER_ROW,
    AuditEntry,
    AuditUnavailableError,
    _StaleConnectionError,
    _WriterConnection,
    append,
    verify,
    writer_for,
)
from serving.db import Database, upgrade
from serving.models import AuditLog
from tests.serving.conftest import database_url


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        request_id=f"req-{i}",
        key_id=1,
        role="bank",
        institution="Bank",
        firm_usc="91440300MA5G2X7K3Q",
        purpose="loan review",
        endpoint="GET /v1/firms/{usc_code}/score",
        model_version="m1",
    )


@contextmanager
def head_locked(db: Database, lane: int | None = None) -> Iterator[None]:
    """Hold every lane's head row, or one ``lane``'s, from another connection (as stuck writers
    or another process's batch would)."""
    with db.engine.connect() as conn:
        if lane is not None:
            conn.execute(sa.text("SELECT 1 FROM audit_head WHERE id = :l FOR UPDATE"), {"l": lane})
        elif db.dialect == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("SELECT last_id FROM audit_head FOR UPDATE"))
        try:
            yield
        finally:
            conn.rollback()


def _run_threads(db: Database, ids: range, timeout_s: float, out: dict[int, object]) -> list:
    def work(i: int) -> None:
        with db.sessions() as s:
            try:
                out[i] = append(s, [entry(i)], timeout_s=timeout_s)[0].id
            except AuditUnavailableError as exc:
                out[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    return threads


@pytest.fixture
def pg_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (for what only PostgreSQL has: lanes, restarts)."""
    with database_url("postgresql", tmp_path, request) as url:
        upgrade(url)
        yield url


def _wait_queued(db: Database, n: int) -> None:
    writer = writer_for(db.engine)
    deadline = time.monotonic() + 20
    while len(writer._queue) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(writer._queue) >= n, "requests did not queue behind the writer"


def test_waiting_requests_are_written_in_one_batch(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    writer = writer_for(db.engine, timeout_s=30)
    out: dict[int, object] = {}
    with head_locked(db):
        # The first request's batch waits for the lock in the writer; nine queue behind it.
        threads = _run_threads(db, range(1), 30, out)
        deadline = time.monotonic() + 20
        while (writer._queue or writer._thread is None) and time.monotonic() < deadline:
            time.sleep(0.01)
        threads += _run_threads(db, range(1, 10), 30, out)
        _wait_queued(db, 9)
    for t in threads:
        t.join(30)
    # Ten distinct rows (PostgreSQL: ids drawn before the wait for a lane are skipped).
    assert len(set(out.values())) == 10 and all(isinstance(v, int) for v in out.values()), out
    assert writer.batches == 2 and writer.entries == 10
    with db.sessions() as s:
        assert verify(s).ok
    db.dispose()


def test_a_locked_head_fails_every_request_of_the_batch_in_bounded_time(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    out: dict[int, object] = {}
    with head_locked(db):
        start = time.monotonic()
        threads = _run_threads(db, range(6), 0.3, out)
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - start
    assert all(isinstance(v, AuditUnavailableError) for v in out.values()), out
    assert len(out) == 6
    # At most two batches ran, each bounded by the timeout (plus slack for a loaded machine).
    assert elapsed < 10
    with db.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog)) == 0
        assert verify(s).ok
        # The chain is usable again once the lock is gone.
        append(s, [entry(99)])
        assert verify(s).ok and verify(s).rows == 1
    db.dispose()


def test_a_session_with_its_own_writes_is_committed_before_the_audit(db_url: str) -> None:
    from serving.auth import create_key

    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        _, row = create_key(s, "bank", "Bank")  # flushed, not committed: holds SQLite's lock
        append(s, [entry(1)], timeout_s=5)
        key_id = row.id
    with db.sessions() as s:
        assert s.scalar(sa.text(f"SELECT count(*) FROM api_keys WHERE id = {key_id}")) == 1
    db.dispose()


def _process_load(url: str, worker: int, threads: int, n: int) -> None:
    db = Database(url)

    def work(t: int) -> None:
        for i in range(n):
            with db.sessions() as s:
                append(s, [entry(worker * 10_000 + t * 100 + i)])

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    db.dispose()


def test_group_commit_across_processes_never_forks_a_lane(db_url: str) -> None:
    upgrade(db_url)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process_load, args=(db_url, w, 4, 10)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    db = Database(db_url)
    with db.sessions() as s:
        result = verify(s)
        ids = list(s.scalars(sa.select(AuditLog.id).order_by(AuditLog.id)))
        requests = set(s.scalars(sa.select(AuditLog.request_id)))
    assert result.ok and result.rows == 3 * 4 * 10, result
    assert len(set(ids)) == 120 and len(requests) == 120
    if db.dialect == "sqlite":
        # One lane, ids continue its count: none drawn and skipped.
        assert ids == list(range(1, 121))
    else:
        # A lane's owner draws ids ahead (16 per row of the batch that draws); what a writer
        # drew and did not use when it ended is the only gap.
        assert max(ids) <= 120 + 3 * PREFETCH_PER_ROW * 4
    db.dispose()


def test_waiting_requests_do_not_starve_the_writer_of_a_connection(db_url: str) -> None:
    from sqlalchemy.orm import sessionmaker

    upgrade(db_url)
    # Two pooled connections for eight concurrent requests that each read before auditing.
    engine = sa.create_engine(db_url, pool_size=2, max_overflow=0, pool_timeout=20)
    sessions = sessionmaker(engine, expire_on_commit=False)
    out: dict[int, object] = {}

    def work(i: int) -> None:
        with sessions() as s:
            s.execute(sa.text("SELECT count(*) FROM api_keys")).scalar()
            try:
                out[i] = append(s, [entry(i)], timeout_s=10)[0].id
            except AuditUnavailableError as exc:
                out[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(out.values()) == list(range(1, 9)), out  # type: ignore[type-var]
    with sessions() as s:
        assert verify(s).ok
    engine.dispose()


def test_a_writer_connection_lost_between_batches_is_replaced(pg_url: str) -> None:
    """A server that dropped the writer's own connection (a restart) costs no request a 503."""
    db = Database(pg_url)
    with db.sessions() as s:
        assert append(s, [entry(1)])[0].id == 1
    writer = writer_for(db.engine)
    assert writer._conn is not None, "the writer keeps its connection between batches"
    pid = writer._conn.dbapi.info.backend_pid
    with db.engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    with db.sessions() as s:
        # The owner had drawn ids ahead on the lost connection: the retry draws its own.
        assert append(s, [entry(2)])[0].id > 1
    assert writer._conn is not None and writer._conn.dbapi.info.backend_pid != pid
    with db.sessions() as s:
        result = verify(s)
    assert result.ok and result.rows == 2, result
    db.dispose()


def test_the_writer_timeouts_stay_on_its_own_connection(db_url: str) -> None:
    """The batch timeout is set on the writer's detached connection, not on pooled ones."""
    upgrade(db_url)
    db = Database(db_url, lock_timeout_s=7)
    with db.sessions() as s:
        append(s, [entry(1)], timeout_s=0.25)
    writer = writer_for(db.engine)
    assert writer._conn is not None and writer._conn.timeout_ms == 250
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert busy == 7000
        else:
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "7s"
    db.dispose()


def test_sqlite_writers_of_several_processes_take_turns_on_a_file_lock(tmp_path: Path) -> None:
    """The turn is a lock file beside the database; held elsewhere too long, the batch fails."""
    fcntl = pytest.importorskip("fcntl")
    url = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    upgrade(url)
    db = Database(url)
    lock = tmp_path / "kuaxin.db-audit.lock"
    with db.sessions() as s:
        assert append(s, [entry(1)])[0].id == 1
    assert lock.is_file()
    with lock.open("a+b") as other:  # another process's writer in the middle of its batch
        fcntl.flock(other, fcntl.LOCK_EX)
        start = time.monotonic()
        with db.sessions() as s, pytest.raises(AuditUnavailableError, match="write turn"):
            append(s, [entry(2)], timeout_s=0.3)
        assert 0.25 < time.monotonic() - start < 10
        fcntl.flock(other, fcntl.LOCK_UN)
    with db.sessions() as s:
        assert append(s, [entry(3)], timeout_s=0.3)[0].id == 2
        assert verify(s).ok
    db.dispose()


def test_the_write_turn_passes_to_the_waiting_process(tmp_path: Path) -> None:
    """A writer that has just written waits behind the one already waiting (no starvation)."""
    fcntl = pytest.importorskip("fcntl")
    from serving.audit import _WriterTurn

    path = str(tmp_path / "kuaxin.db-audit.lock")
    a, b = _WriterTurn(path, 5000), _WriterTurn(path, 5000)  # two processes' writers
    order: list[str] = []

    def other() -> None:
        with b:
            order.append("b")

    a.__enter__()
    waiting = threading.Thread(target=other)
    waiting.start()
    with open(f"{path}.queue", "a+b") as probe:  # wait until b holds the queue lock
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
            except BlockingIOError:
                break
            assert time.monotonic() < deadline, "the other writer never queued"
            time.sleep(0.005)
    a.__exit__(None, None, None)
    with a:  # straight back for the next batch: b goes first
        order.append("a")
    waiting.join(10)
    assert order == ["b", "a"]
    a.close()
    b.close()


# ------------------------------------------------------------------------------------ lanes
def test_a_batch_takes_a_free_lane_instead_of_waiting(pg_url: str) -> None:
    """PostgreSQL: with lane 1 held elsewhere, a batch commits on lane 2 at once."""
    db = Database(pg_url)
    with db.sessions() as s:
        first = append(s, [entry(1)], timeout_s=30)[0]
    with head_locked(db, lane=1):
        start = time.monotonic()
        with db.sessions() as s:
            rows = append(s, [entry(2), entry(3)], timeout_s=30)
        waited = time.monotonic() - start
    with db.sessions() as s:
        later = append(s, [entry(4)])[0]
        result = verify(s)
        heads = dict(s.execute(sa.text("SELECT id, last_id FROM audit_head")).all())
    assert first.lane == 1 and [r.lane for r in rows] == [2, 2] and later.lane == 1
    assert waited < 10  # not the 30 s lock wait: it never queued behind lane 1
    assert rows[0].prev_hash == "0" * 64 and rows[1].prev_hash == rows[0].row_hash
    assert later.prev_hash == first.row_hash  # lane 1 goes on from its own last row
    assert heads[1] == later.id and heads[2] == rows[1].id
    assert result.ok and result.rows == 4, result
    db.dispose()


def test_a_row_on_a_lane_without_a_head_fails_verify(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        row = append(s, [entry(1)])[0]
    with db.engine.begin() as conn:  # a row written beside the writers, on lane 99
        conn.execute(
            sa.insert(AuditLog).values(
                {**{c: getattr(row, c) for c in _COLUMNS}, "id": 1_000, "lane": 99}
            )
        )
    with db.sessions() as s:
        result = verify(s)
    assert not result.ok and result.first_bad_id == 1_000
    assert "no head row" in (result.reason or "")
    db.dispose()


_COLUMNS = [c.name for c in AuditLog.__table__.columns]


def test_lanes_migration_keeps_the_chain_and_its_ids(db_url: str) -> None:
    """0004 puts the rows written before it on lane 1; ids go on after the last one."""
    from alembic import command

    from serving.db import alembic_config

    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        append(s, [entry(i) for i in range(3)])
    db.dispose()
    command.downgrade(alembic_config(db_url), "0003")  # back to the one chain, rows kept
    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        assert append(s, [entry(9)])[0].id == 4
        result = verify(s)
        lanes = set(s.scalars(sa.select(AuditLog.lane)))
    assert result.ok and result.rows == 4 and lanes == {1}
    db.dispose()


def test_going_back_to_one_chain_is_refused_when_lanes_were_used(pg_url: str) -> None:
    from alembic import command

    from serving.db import alembic_config

    db = Database(pg_url)
    with head_locked(db, lane=1), db.sessions() as s:
        append(s, [entry(1)])
    db.dispose()
    with pytest.raises(RuntimeError, match="lanes other than 1"):
        command.downgrade(alembic_config(pg_url), "0003")


def test_a_busy_writer_lingers_for_a_fuller_batch_and_an_idle_one_does_not(db_url: str) -> None:
    """``linger_s``: back to back, the writer waits (bounded) for as many entries as before."""
    upgrade(db_url)
    db = Database(db_url)
    writer = writer_for(db.engine, linger_s=0.0)

    def spaced(n: int, gap: float) -> float:
        """Append n single entries from n threads, ``gap`` apart; seconds the first waited."""
        out: dict[int, float] = {}

        def work(i: int) -> None:
            t0 = time.monotonic()
            with db.sessions() as s:
                append(s, [entry(i)])
            out[i] = time.monotonic() - t0

        threads = []
        for i in range(n):
            threads.append(threading.Thread(target=work, args=(i,)))
            threads[-1].start()
            time.sleep(gap)
        for t in threads:
            t.join(30)
        return out[0]

    # Idle (nothing arrived while the last batch was written): no wait, one batch per entry.
    writer.linger_s = 2.0
    before = writer.batches
    spaced(3, 0.3)
    assert writer.batches - before == 3
    # Back to back after a batch of four: the next waits until four entries are there.
    with writer._cond:
        writer._busy, writer._in_flight = True, 4
    before, entries = writer.batches, writer.entries
    first_waited = spaced(4, 0.1)
    assert writer.batches - before == 1 and writer.entries - entries == 4
    assert first_waited >= 0.25  # it waited for the three that came after it
    # The wait is bounded by linger_s when the entries do not come.
    writer.linger_s = 0.3
    with writer._cond:
        writer._busy, writer._in_flight = True, 50
    waited = spaced(1, 0.0)
    assert 0.25 <= waited < 5
    with db.sessions() as s:
        assert verify(s).ok
    writer.linger_s = 0.0
    db.dispose()


def test_a_lane_owner_writes_its_next_batches_in_one_round_trip(pg_url: str) -> None:
    """PostgreSQL: each writer owns a lane; batches after the first are one statement."""
    db_a, db_b = Database(pg_url), Database(pg_url)  # two engines: two writers, as two workers
    rows_a, rows_b = [], []
    for i in range(6):
        with db_a.sessions() as s:
            rows_a += append(s, [entry(2 * i), entry(2 * i + 100)])
        with db_b.sessions() as s:
            rows_b += append(s, [entry(2 * i + 1)])
    conn_a, conn_b = writer_for(db_a.engine)._conn, writer_for(db_b.engine)._conn
    assert conn_a is not None and conn_b is not None
    assert {conn_a.lane, conn_b.lane} == {1, 2}
    assert {r.lane for r in rows_a} == {conn_a.lane} and {r.lane for r in rows_b} == {conn_b.lane}
    # The first batch of each read its head and drew ids ahead; the other five needed neither.
    assert conn_a.fast_batches == 5 and conn_b.fast_batches == 5
    for rows in (rows_a, rows_b):
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    with db_a.sessions() as s:
        result = verify(s)
        heads = dict(s.execute(sa.text("SELECT id, last_id FROM audit_head")).all())
    assert result.ok and result.rows == 18, result
    assert heads[conn_a.lane] == rows_a[-1].id and heads[conn_b.lane] == rows_b[-1].id
    db_a.dispose()
    db_b.dispose()


def test_a_head_moved_by_a_writer_without_a_lane_sends_the_batch_the_long_way(pg_url: str) -> None:
    """The owner's cached head is only a guess: another writer on its lane is never forked."""
    db = Database(pg_url)
    with db.sessions() as s:
        first = append(s, [entry(1)])[0]
    writer = writer_for(db.engine)
    owner = writer._conn
    assert owner is not None and owner.lane == first.lane == 1
    # A writer that owns no lane (more writers than lanes, or an older release) takes the
    # first free head: the owner's, between the owner's batches.
    other_db = Database(pg_url)
    other = _WriterConnection(other_db.engine, 5000)
    other.lane = None
    foreign = other.write([entry(2)])
    assert foreign[0]["lane"] == 1 and foreign[0]["prev_hash"] == first.row_hash
    with db.sessions() as s:
        later = append(s, [entry(3), entry(4)])
    assert owner.fast_batches == 0  # the one-statement batch found the head moved
    assert [r.lane for r in later] == [1, 1]
    assert later[0].prev_hash == foreign[0]["row_hash"]
    assert later[0].id > foreign[0]["id"]  # ids drawn ahead before the move were dropped
    with db.sessions() as s:
        again = append(s, [entry(5)])[0]
        result = verify(s)
    assert owner.fast_batches == 1 and again.prev_hash == later[1].row_hash
    assert result.ok and result.rows == 5, result
    other.close()
    other_db.dispose()
    db.dispose()


def test_a_one_statement_batch_stores_every_field_as_hashed(pg_url: str) -> None:
    """The rows travel as one JSON parameter: text that needs escaping and NULLs come back
    exactly, so their hashes verify."""
    db = Database(pg_url)
    odd = dataclasses.replace(
        entry(0),
        request_id='req-"quoted"\\back',
        key_id=None,
        institution='深圳跨境 Bank, "Ltd"\n{json: [1]}',
        purpose="tab\tand 'single'",
    )
    with db.sessions() as s:
        append(s, [entry(1)])
        written = append(s, [odd, entry(2)])
    conn = writer_for(db.engine)._conn
    assert conn is not None and conn.fast_batches == 1
    with db.sessions() as s:
        stored = s.get(AuditLog, written[0].id)
        result = verify(s)
    assert stored is not None
    for name in ("request_id", "key_id", "institution", "purpose", "row_hash", "prev_hash"):
        assert getattr(stored, name) == getattr(written[0], name), name
    assert stored.key_id is None and stored.institution == odd.institution
    assert result.ok and result.rows == 3, result
    db.dispose()


def _terminate(db: Database, pid: int) -> None:
    """Terminate a backend and wait until the server has let it go."""
    with db.engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            if not conn.execute(
                sa.text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).first():
                return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} still there")


@pytest.mark.parametrize("committed", [False, True])
def test_a_one_statement_batch_lost_with_its_connection_is_written_once(
    pg_url: str, committed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's statement met a lost connection: retried if it did not commit, not if it did."""
    db = Database(pg_url)
    with db.sessions() as s:
        append(s, [entry(1)])
    writer = writer_for(db.engine)
    conn = writer._conn
    assert conn is not None
    pid = conn.dbapi.info.backend_pid
    if committed:
        # The statement commits, then the connection is lost before its answer is read.
        real = conn._write_one

        def write_then_lose(cur: object, entries: list[AuditEntry]) -> object:
            values = real(cur, entries)
            _terminate(db, pid)
            raise _StaleConnectionError(ConnectionError("lost"), sent=values)

        monkeypatch.setattr(conn, "_write_one", write_then_lose)
    else:
        # The server closed the connection; the statement is sent before anything is noticed.
        _terminate(db, pid)
        monkeypatch.setattr(conn, "_server_spoke", lambda: False)
    with db.sessions() as s:
        rows = append(s, [entry(2), entry(3)])
    assert writer._conn is not None and writer._conn is not conn
    with db.sessions() as s:
        result = verify(s)
        stored = list(s.scalars(sa.select(AuditLog.request_id).order_by(AuditLog.id)))
    assert stored == ["req-1", "req-2", "req-3"]  # every entry once
    assert [r.request_id for r in rows] == ["req-2", "req-3"]
    assert result.ok and result.rows == 3, result
    db.dispose()
