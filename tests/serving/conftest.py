"""Fixtures of the scoring-service tests: the served model and snapshot, databases on SQLite
and PostgreSQL, and a service factory with helpers for keys and consents.

PostgreSQL tests run in a fresh schema of the ``test`` database per use (dropped afterwards);
they skip with instructions when no server is reachable (see the ``postgres_url`` fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

DB_KINDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def svc_snapshot_path(snapshot: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared snapshot written as the Parquet file the service reads."""
    path = tmp_path_factory.mktemp("svc_snapshot") / "snapshot.parquet"
    snapshot.to_parquet(path)
    return path


@pytest.fixture(scope="session")
def svc_settings_kwargs(trained_model_dir: Path, svc_snapshot_path: Path) -> dict[str, Any]:
    """Settings shared by the service tests (model package and snapshot file)."""
    return {"model_dir": trained_model_dir, "snapshot": svc_snapshot_path}


@pytest.fixture(scope="session")
def svc_loaded(svc_settings_kwargs: dict[str, Any]) -> Any:
    """The served bundle, loaded once through the service's own loading path."""
    from serving.settings import Settings
    from serving.state import ServingState

    return ServingState().load(Settings(database_url="sqlite://", **svc_settings_kwargs))


@dataclass(frozen=True)
class Firms:
    """Two valid firms of the snapshot: ``a`` (the one under test) and ``b`` (another)."""

    a: str
    b: str
    unknown: str  # a valid USCC that is not in the snapshot


@pytest.fixture(scope="session")
def svc_firms(svc_loaded: Any) -> Firms:
    from features.uscc import generate, validate

    valid = sorted(c for c in svc_loaded.position if validate(c).valid)
    by_pd = svc_loaded.scores.loc[valid, "pd"].sort_values()
    a, b = str(by_pd.index[len(by_pd) // 2]), str(by_pd.index[len(by_pd) // 3])
    import numpy as np

    unknown = next(
        c for c in generate(np.random.default_rng(99), 50) if c not in svc_loaded.position
    )
    return Firms(a, b, unknown)


@contextmanager
def database_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of ``kind``: a SQLite file, or a new PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'kuaxin.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"kx_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test, on SQLite and on PostgreSQL."""
    with database_url(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture(scope="module", params=DB_KINDS)
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database per test module, on SQLite and on PostgreSQL."""
    with database_url(request.param, tmp_path_factory.mktemp("db"), request) as url:
        yield url


@dataclass
class Service:
    """A running app (TestClient) on its own database, with helpers."""

    client: Any
    app: Any
    db: Any
    loaded: Any

    def key(self, role: str, org: str | None = None, firm: str | None = None) -> str:
        from serving.auth import create_key

        with self.db.session() as s:
            key, _ = create_key(s, role, org or f"{role}-{uuid.uuid4().hex[:6]}", firm)
        return key

    def consent(
        self,
        firm: str,
        institution: str,
        scopes: tuple[str, ...] = ("score", "explanation"),
        state: str = "active",
    ) -> int:
        """Grant a consent and bring it into ``state`` (active, expired or revoked)."""
        from serving.consent import grant, revoke
        from serving.models import Consent

        with self.db.session() as s:
            row = grant(
                s,
                firm,
                institution,
                list(scopes),
                "credit review",
                datetime.now(UTC) + timedelta(days=30),
            )
            if state == "expired":
                s.get(Consent, row.id).expires_at = datetime.now(UTC) - timedelta(days=1)
            elif state == "revoked":
                revoke(s, row.id)
            return row.id

    def audit_count(self) -> int:
        from serving.models import AuditLog

        with self.db.session() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(AuditLog)) or 0

    def verify(self) -> Any:
        from serving.audit import verify

        with self.db.session() as s:
            return verify(s)


@pytest.fixture()
def make_service(svc_loaded: Any) -> Iterator[Callable[..., Service]]:
    """Build services: ``make_service(url, loaded=..., **settings)`` (closed after the test)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import Database
    from serving.settings import Settings
    from serving.state import ServingState

    stack = ExitStack()

    def make(url: str, loaded: Any = "default", **settings: Any) -> Service:
        bundle = svc_loaded if loaded == "default" else loaded
        # Tests fire requests faster than any client would: limits only where a test asks.
        settings.setdefault("rate_limits_enabled", False)
        cfg = Settings(database_url=url, load_on_start=False, **settings)
        app = create_app(cfg, ServingState(bundle))
        client = stack.enter_context(TestClient(app))
        db = Database(url)
        stack.callback(db.dispose)
        return Service(client=client, app=app, db=db, loaded=bundle)

    with stack:
        yield make


def headers(key: str) -> dict[str, str]:
    """Request headers carrying ``key``."""
    return {"X-API-Key": key}
