"""Database, migrations and the hash-chained audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from serving.audit import AuditEntry, AuditUnavailableError, append, verify
from serving.db import Database, current_revision, upgrade
from serving.models import AuditLog

FIRM = "91440300MA5G2X7K3Q"


def entry(i: int, firm: str = FIRM) -> AuditEntry:
    return AuditEntry(
        request_id=f"req-{i}",
        key_id=1,
        role="bank",
        institution="Bank 银行",
        firm_usc=firm,
        purpose="loan review",
        endpoint="GET /v1/firms/{usc_code}/score",
        model_version="m1",
    )


def _tamper(db: Database, sql: str) -> None:
    """Run an edit the append-only guard would refuse, with the guard dropped first."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("DROP TRIGGER audit_log_append_only ON audit_log"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_log_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(sa.text(sql))


def test_migrations_idempotent_and_at_head(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    from serving.db import head_revision

    assert current_revision(db_url) == head_revision()
    names = set(sa.inspect(sa.create_engine(db_url, poolclass=sa.NullPool)).get_table_names())
    assert {"api_keys", "consents", "audit_log", "audit_head"} <= names


def test_chain_verifies_and_guard_refuses_edits(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        rows = append(s, [entry(i) for i in range(5)])
        assert [r.id for r in rows] == [1, 2, 3, 4, 5]
        append(s, [entry(9)])
        result = verify(s)
    assert result.ok and result.rows == 6
    # The database itself refuses updates and deletes of audit rows.
    for sql in (
        "UPDATE audit_log SET purpose = 'x' WHERE id = 2",
        "DELETE FROM audit_log WHERE id = 2",
    ):
        with pytest.raises(sa.exc.DBAPIError), db.engine.begin() as conn:
            conn.execute(sa.text(sql))
    db.dispose()


@pytest.mark.parametrize(
    ("sql", "bad_id", "reason"),
    [
        ("UPDATE audit_log SET institution = 'Other Bank' WHERE id = 3", 3, "row_hash"),
        ("DELETE FROM audit_log WHERE id = 3", 4, "rows missing"),
        ("DELETE FROM audit_log WHERE id = 5", 5, "missing"),
    ],
)
def test_tampering_is_found_at_the_first_bad_row(
    db_url: str, sql: str, bad_id: int, reason: str
) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        append(s, [entry(i) for i in range(5)])
    _tamper(db, sql)
    with db.sessions() as s:
        result = verify(s)
    assert not result.ok
    assert result.first_bad_id == bad_id
    assert reason in (result.reason or "")
    db.dispose()


def test_cli_audit_verify_names_tampered_row(db_url: str) -> None:
    from kuaxin.cli import app

    upgrade(db_url)
    db = Database(db_url)
    with db.sessions() as s:
        append(s, [entry(i) for i in range(4)])
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert ok.exit_code == 0 and "4 rows" in ok.output
    _tamper(db, "UPDATE audit_log SET firm_usc = '91440300MA5G2X7K3R' WHERE id = 2")
    bad = runner.invoke(app, ["audit", "verify", "--database-url", db_url])
    assert bad.exit_code == 1
    assert "row 2" in bad.output
    db.dispose()


def test_concurrent_threads_do_not_fork_the_chain(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                with db.sessions() as s:
                    append(s, [entry(t * 100 + i), entry(t * 100 + i + 50)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.sessions() as s:
        result = verify(s)
        ids = list(s.scalars(sa.select(AuditLog.id).order_by(AuditLog.id)))
    assert result.ok, result
    assert ids == list(range(1, 6 * 15 * 2 + 1))
    db.dispose()


def _append_in_process(url: str, worker: int, n: int) -> None:
    db = Database(url)
    for i in range(n):
        with db.sessions() as s:
            append(s, [entry(worker * 1000 + i)])
    db.dispose()


def test_concurrent_processes_do_not_fork_the_chain(db_url: str) -> None:
    # Separate processes share no lock: only the database serialises the appends. Spawned,
    # not forked: a fork copies locks that another thread of this process (a writer, a
    # server from an earlier test) holds at that moment, and the child can hang on them.
    upgrade(db_url)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_in_process, args=(db_url, w, 20)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    db = Database(db_url)
    with db.sessions() as s:
        result = verify(s)
    assert result.ok and result.rows == 60, result
    db.dispose()


def test_append_failure_raises_audit_unavailable(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_gone"))
    with db.sessions() as s, pytest.raises(AuditUnavailableError):
        append(s, [entry(1)])
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log_gone RENAME TO audit_log"))
    with db.sessions() as s:
        append(s, [entry(2)])
        result = verify(s)
    # The failed append left no trace: the chain is whole and starts at 1.
    assert result.ok and result.rows == 1
    db.dispose()
