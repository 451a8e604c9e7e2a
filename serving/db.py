"""Database access: engines, sessions and Alembic migrations run from Python.

SQLite (a file) by default; PostgreSQL when ``KUAXIN_DATABASE_URL`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


def make_engine(url: str) -> sa.Engine:
    """Create an engine for ``url`` with settings that suit the service.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.

    Returns
    -------
    sqlalchemy.Engine
        SQLite connections wait up to 30 s for a lock and may cross threads (the threadpool);
        PostgreSQL connections are pre-pinged so a restarted server is reconnected.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run during the audit appends; foreign keys are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine and its session factory.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
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
        """Close every pooled connection."""
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
