"""A served world for the matching, insurance, regulator and portal tests: the shared small
world's snapshot scored by the quickly trained model, a migrated SQLite database, API keys for
every role and the firm's consents. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest


@dataclass
class ServedWorld:
    settings: Any
    state: Any
    loaded: Any
    firm: str
    other_firm: str
    keys: dict[str, str] = field(default_factory=dict)

    def app(self) -> Any:
        from serving.app import create_app

        return create_app(self.settings, self.state)

    def headers(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


@pytest.fixture(scope="session")
def served_world(
    trained_credit: Any, snapshot: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> ServedWorld:
    from features.catalog import load_catalog
    from features.uscc import validate
    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database, upgrade
    from serving.settings import Settings
    from serving.state import ServingState, build

    loaded = build(
        trained_credit.model,
        snapshot,
        catalog=load_catalog(),
        model_source="test model",
        snapshot_source="test snapshot",
    )
    root: Path = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{root / 'kuaxin.db'}"
    upgrade(url)
    settings = Settings(database_url=url, load_on_start=False, migrate_on_start=False)
    valid = sorted(c for c in loaded.position if validate(c).valid)
    # The firm with the best PD among valid codes (most products to show), and another one.
    scores = loaded.scores.loc[valid, "pd"].sort_values()
    firm, other = str(scores.index[len(scores) // 4]), str(scores.index[-1])
    keys: dict[str, str] = {}
    db = Database(url)
    with db.session() as s:
        for role, org, usc in [
            ("bank", "Pengcheng Commercial Bank", None),
            ("insurer", "Sinosure Shenzhen", None),
            ("enterprise", "the firm", firm),
            ("regulator", "Shenzhen Commerce Bureau", None),
            ("admin", "Kuaxin ops", None),
            ("bank_no_consent", "Other Bank", None),
        ]:
            key, _ = create_key(s, role.removesuffix("_no_consent"), org, usc)
            keys[role] = key
        expires = datetime.now(UTC) + timedelta(days=30)
        grant(s, firm, "Pengcheng Commercial Bank", ["score"], "loan review", expires)
        grant(s, firm, "Sinosure Shenzhen", ["quote"], "cover underwriting", expires)
    db.dispose()
    return ServedWorld(settings, ServingState(loaded), loaded, firm, other, keys)
