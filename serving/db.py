"""Database access: engines, sessions and Alembic migrations run from Python.

SQLite (a file) by default; PostgreSQL when ``KUAXIN_DATABASE_URL`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

#: Folder of the migration scripts and their alembic.ini (packaged with serving).
MIGRATIONS = Path(__file__).parent / "migrations"


#: Default bounds of every database call (seconds): a statement, a lock wait, a connection.
STATEMENT_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0


#: Connections a worker keeps open (as many again may be opened beyond it under a burst).
POOL_SIZE = 16


def make_engine(
    url: str,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> sa.Engine:
    """Create an engine for ``url`` whose every call ends in bounded time.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    statement_timeout_s : float
        PostgreSQL ``statement_timeout`` of every session.
    lock_timeout_s : float
        Longest wait for a lock: PostgreSQL ``lock_timeout``, SQLite's busy timeout.
    connect_timeout_s : float
        Longest wait for a new connection, and for a free one from the pool.

    Returns
    -------
    sqlalchemy.Engine
        SQLite connections may cross threads (the threadpool), use WAL and are not pre-pinged
        (a file database has no server that could drop them; the ping was one extra statement
        per request); PostgreSQL connections are pre-pinged so a restarted server is reconnected.
    """
    if url.startswith("sqlite"):
        in_memory = sa.make_url(url).database in (None, "", ":memory:")
        # An in-memory database has a single-connection pool without a wait to bound.
        # A file database keeps as many connections as requests run at once (a connection
        # beyond the pool is opened and closed per request, with its pragmas).
        pool = (
            {}
            if in_memory
            else {
                "pool_timeout": connect_timeout_s,
                "pool_size": POOL_SIZE,
                "max_overflow": POOL_SIZE,
            }
        )
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_timeout_s},
            **pool,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run during the audit appends; foreign keys are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(lock_timeout_s * 1000)}")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(1, round(connect_timeout_s))
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
        pool_timeout=connect_timeout_s,
        connect_args=connect_args,
    )
    if engine.dialect.name == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _timeouts(dbapi_conn: Any, _record: Any) -> None:
            # Per session, not in the URL: the URL's own ``options`` (search_path) stay intact.
            cur = dbapi_conn.cursor()
            cur.execute(f"SET statement_timeout = {int(statement_timeout_s * 1000)}")
            cur.execute(f"SET lock_timeout = {int(lock_timeout_s * 1000)}")
            cur.execute("SET idle_in_transaction_session_timeout = 60000")
            cur.close()
            dbapi_conn.commit()

    return engine


class Database:
    """An engine and its session factory.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    **timeouts : float
        ``statement_timeout_s``, ``lock_timeout_s``, ``connect_timeout_s`` of
        :func:`make_engine`.
    """

    def __init__(self, url: str, **timeouts: float) -> None:
        self.url = url
        self.engine = make_engine(url, **timeouts)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """Name of the database dialect (``sqlite``, ``postgresql``)."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session that commits on success and rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """End the engine's audit writer (its connection, its lane) and close every pooled one."""
        from serving.audit import close_writer  # audit imports the models, which import this

        close_writer(self.engine)
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    """Alembic configuration for the packaged migrations and ``url``.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.

    Returns
    -------
    alembic.config.Config
        Ready for ``alembic.command`` functions.
    """
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation treats '%' specially (URL-encoded passwords, options).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    revision : str, default "head"
        Target revision.
    """
    command.upgrade(alembic_config(url), revision)
    logger.info("database %s migrated to %s", sa.make_url(url).render_as_string(), revision)


def head_revision() -> str:
    """Return the newest revision of the packaged migrations (what ``upgrade`` reaches)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """Return the database's current migration revision (None for an empty database)."""
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


#: Where a request's session lives in its ASGI scope's state (``serving.deps.get_session``).
SESSION_KEY = "kuaxin_db_session"


def close_session(scope: MutableMapping[str, Any]) -> None:
    """Close the session ``serving.deps.get_session`` opened for this request, if any."""
    session = (scope.get("state") or {}).pop(SESSION_KEY, None)
    if session is not None:
        session.close()
