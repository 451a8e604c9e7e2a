"""Shared fixtures: one small simulated world, built once per test session and reused by the
features, training and serving tests; and the machine's PostgreSQL when it is reachable.

Outputs go to pytest's temporary folders, never into tracked ones.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

#: The small world every integration test shares (seconds to build, big enough to train on).
WORLD = {"n_firms": 600, "seed": 11, "start": "2019-01", "end": "2024-12", "fault_rate": 0.01}
DATASET_WINDOW = (date(2020, 1, 1), date(2023, 12, 1))
SNAPSHOT_AS_OF = date(2024, 7, 1)

POSTGRES_HELP = (
    "PostgreSQL tests need a server: start one (e.g. 'pg_ctlcluster 15 main start') and set "
    "KUAXIN_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session", autouse=True)
def _tracking_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point MLflow at a temporary store, so no test touches a developer's ``mlflow.db``.

    Tests that need a registry still pass their own URI (``mlflow_tracking_uri``); this only
    catches code that falls back to the environment or the default in the working directory.
    """
    store = tmp_path_factory.mktemp("mlflow-default") / "mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"


@pytest.fixture(scope="session")
def sim_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Raw tables and oracle of the shared small world."""
    from simulator.simulate import simulate

    root = tmp_path_factory.mktemp("world")
    raw, oracle = root / "raw", root / "oracle"
    simulate(out_dir=raw, oracle_dir=oracle, progress=False, **WORLD)
    return raw, oracle


@pytest.fixture(scope="session")
def clean_dir(sim_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared world after ingestion (clean tables, quarantine, report)."""
    from features.ingest import ingest

    out = tmp_path_factory.mktemp("clean")
    ingest(sim_dirs[0], out, progress=False)
    return out


@pytest.fixture(scope="session")
def clean_tables(clean_dir: Path) -> dict[str, pd.DataFrame]:
    """Every clean table of the shared world, in memory."""
    from features.snapshot import load_clean

    return load_clean(clean_dir)


@pytest.fixture(scope="session")
def train_dataset(clean_tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Quarterly labelled (firm, as-of) rows of the shared world."""
    from features.dataset import build_dataset

    return build_dataset(clean_tables, *DATASET_WINDOW, every="quarter")


@pytest.fixture(scope="session")
def snapshot(clean_tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The shared world's feature snapshot at ``SNAPSHOT_AS_OF``."""
    from features.snapshot import build_snapshot

    return build_snapshot(clean_tables, SNAPSHOT_AS_OF)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a reachable PostgreSQL; skips (or fails under CI's KUAXIN_REQUIRE_POSTGRES=1)."""
    import sqlalchemy as sa

    url = os.environ.get(
        "KUAXIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach the server means: not available here
        if os.environ.get("KUAXIN_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {url}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {url}. {POSTGRES_HELP}")
    return url


@pytest.fixture(scope="session")
def trained_credit(train_dataset: pd.DataFrame):  # -> training.train.TrainResult
    """A CreditModel trained quickly (LightGBM defaults, no search) on the shared world."""
    from training.train import train_credit

    return train_credit(train_dataset, trials=0, num_threads=1)


@pytest.fixture(scope="session")
def trained_model_dir(trained_credit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the quickly trained CreditModel (booster.txt, model.json, catalog.yaml)."""
    return trained_credit.model.save(tmp_path_factory.mktemp("credit_model"))


@pytest.fixture()
def mlflow_tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow tracking store (artifacts beside it) for one test."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
