"""An insurer world for API tests: the served snapshot, a graded-buyers file, keys and consents.

The graded-buyers file is the service's input contract (what ``kuaxin buyers score`` writes);
here it is written by hand so each buyer exercises one rule (detail shown or withheld, PD above
the refusal line, a declined country).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

BUYERS = pd.DataFrame(
    {
        "buyer_id": ["BYUSA000001", "BYDEU000002", "BYVNM000003", "BYRUS000004"],
        "as_of": pd.Timestamp("2025-07-01"),
        "country_iso3": ["USA", "DEU", "VNM", "RUS"],
        "size_band": ["large", "medium", "small", "medium"],
        "sector": ["retail_chain", "wholesaler", "distributor", "importer"],
        "grade": ["A", "C", "D", "B"],
        "pd": [0.002, 0.03, 0.20, 0.01],
        "pd_model": [0.002, 0.05, 0.22, 0.01],
        "pd_prior": [0.01, 0.02, 0.05, 0.02],
        "weight": [0.9, 0.3, 0.8, 0.7],
        "in_default": [False, False, False, False],
        "exporters_12m": [5.0, 1.0, 4.0, 3.0],
        "shipped_usd_12m": [2.1e6, 3.0e5, 8.0e5, 4.0e5],
        "expected_usd_12m": [2.0e6, 2.9e5, 7.5e5, 3.9e5],
        "unpaid_share_12m": [0.01, 0.2, 0.4, 0.0],
        "unpaid_share_3m": [0.0, 0.3, 0.6, 0.0],
        "dbt_12m": [2.0, 35.0, 60.0, 3.0],
        "dbt_3m": [1.5, 44.0, 80.0, 3.0],
        "dbt_max_3m": [3.0, 51.0, 90.0, 4.0],
        "late_share_12m": [0.0, 0.4, 0.7, 0.0],
        "months_history": [40.0, 5.0, 30.0, 20.0],
        "claims_24m": [0.0, 0.0, 1.0, 0.0],
        "reasons": [
            json.dumps([{"feature": "dbt_3m", "value": 1.5, "contribution": 0.1}]),
            json.dumps([{"feature": "dbt_3m", "value": 44.0, "contribution": 0.9}]),
            json.dumps([{"feature": "unpaid_share_3m", "value": 0.6, "contribution": 1.2}]),
            json.dumps([{"feature": "country_category_rank", "value": 8, "contribution": 0.5}]),
        ],
        "model_version": "buyer-test",
    }
)
INSURER = "Sinosure Shenzhen"


@dataclass
class InsurerWorld:
    settings: Any
    state: Any
    loaded: Any
    firm: str
    other_firm: str
    url: str
    keys: dict[str, str] = field(default_factory=dict)

    def app(self) -> Any:
        from serving.app import create_app

        return create_app(self.settings, self.state)

    def headers(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}


def make_insurer_world(served_world: Any, root: Path) -> InsurerWorld:
    """A fresh database and keys over ``served_world``'s snapshot, with the buyers file."""
    from serving.auth import create_key
    from serving.consent import grant
    from serving.db import Database, upgrade

    path = root / "buyer_grades.parquet"
    BUYERS.to_parquet(path, index=False)
    url = f"sqlite:///{root / 'insurer.db'}"
    upgrade(url)
    settings = served_world.settings.model_copy(update={"database_url": url, "buyer_grades": path})
    firm, other = served_world.firm, served_world.other_firm
    keys: dict[str, str] = {}
    db = Database(url)
    with db.session() as s:
        for who, role, org, usc in [
            ("insurer", "insurer", INSURER, None),
            ("insurer_other", "insurer", "Other Insurer", None),
            ("bank", "bank", "Pengcheng Commercial Bank", None),
            ("enterprise", "enterprise", "the firm", firm),
            ("enterprise_other", "enterprise", "other firm", other),
            ("regulator", "regulator", "Shenzhen Commerce Bureau", None),
            ("admin", "admin", "Kuaxin ops", None),
        ]:
            keys[who], _ = create_key(s, role, org, usc)
        expires = datetime.now(UTC) + timedelta(days=30)
        grant(s, firm, INSURER, ["quote"], "cover underwriting", expires)
        grant(s, firm, "Pengcheng Commercial Bank", ["score", "quote"], "loan review", expires)
    db.dispose()
    return InsurerWorld(settings, served_world.state, served_world.loaded, firm, other, url, keys)


@pytest.fixture(scope="module")
def insurer_world(served_world: Any, tmp_path_factory: pytest.TempPathFactory) -> InsurerWorld:
    return make_insurer_world(served_world, tmp_path_factory.mktemp("insurer"))
