"""What the insurer endpoints read: graded buyers, the insurer configuration, the limit book.

Graded buyers come from the Parquet file ``kuaxin buyers score`` writes (``KUAXIN_BUYER_GRADES``),
read once per file version; without it every buyer is unknown and quotes use the caller's grade.
The limit book of an insurer is rebuilt from its decided requests in the database (the latest
decision per exporter and buyer is in force).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from features.values import plain
from serving.models import BuyerLimitDecision
from tradefinance.buyer_limits import BuyerRisk, LimitBook
from tradefinance.insurance import CountryTable, PlatformBuyer
from tradefinance.insurer_config import InsurerConfig, load_insurer_config

_lock = threading.Lock()


@dataclass(frozen=True)
class GradedBuyers:
    """Graded buyers, indexed by ``buyer_id`` (empty when no file is configured)."""

    frame: pd.DataFrame
    source: str

    def __contains__(self, buyer_id: object) -> bool:
        return isinstance(buyer_id, str) and buyer_id in self.frame.index

    def row(self, buyer_id: str) -> dict[str, Any]:
        """Return the buyer's graded row as plain values."""
        return {k: plain(v) for k, v in self.frame.loc[buyer_id].items()}

    def risk(self, buyer_id: str) -> BuyerRisk:
        """Return the buyer as the limit engine sees it."""
        r = self.frame.loc[buyer_id]
        return BuyerRisk(
            buyer_id=buyer_id,
            country_iso3=str(r["country_iso3"]),
            size_band=str(r["size_band"]),
            grade=str(r["grade"]),
            pd=float(r["pd"]),
            as_of=str(pd.Timestamp(r["as_of"]).date()),
            source="platform",
            sector=None if pd.isna(r.get("sector")) else str(r["sector"]),
        )

    def platform_buyer(self, buyer_id: str, limit_usd: float | None) -> PlatformBuyer:
        """Return the buyer as a quote sees it (grade, PD, as-of, model version, limit)."""
        r = self.risk(buyer_id)
        version = str(self.frame.loc[buyer_id].get("model_version", "buyer model"))
        return PlatformBuyer(
            buyer_id, r.country_iso3, r.grade, r.pd, r.as_of or "", version, limit_usd
        )


@lru_cache(maxsize=4)
def _read(path: str, mtime: float) -> GradedBuyers:
    frame = pd.read_parquet(path)
    need = {"buyer_id", "as_of", "country_iso3", "size_band", "pd", "grade"}
    missing = sorted(need - set(frame.columns))
    if missing:
        raise ValueError(f"{path}: graded buyers file lacks columns {missing}")
    return GradedBuyers(frame.set_index("buyer_id", drop=False), f"{Path(path).name}@{mtime:.0f}")


def graded_buyers(request: Request) -> GradedBuyers:
    """Return the app's graded buyers (``settings.buyer_grades``), re-read when the file changes."""
    path = getattr(getattr(request.app.state, "settings", None), "buyer_grades", None)
    if path is None or not Path(path).is_file():
        return GradedBuyers(pd.DataFrame(columns=["buyer_id"]).set_index("buyer_id"), "none")
    with _lock:
        return _read(str(path), Path(path).stat().st_mtime)


def insurer_config(request: Request) -> InsurerConfig:
    """Return the app's insurer configuration (``settings.insurer`` or the shipped file)."""
    path = getattr(getattr(request.app.state, "settings", None), "insurer", None)
    return load_insurer_config(path) if path else load_insurer_config()


BuyersDep = Annotated[GradedBuyers, Depends(graded_buyers)]
InsurerConfigDep = Annotated[InsurerConfig, Depends(insurer_config)]


def limit_book(session: Session, insurer: str) -> LimitBook:
    """Rebuild the insurer's limits in force: the latest decision per (exporter, buyer) with a grant."""
    rows = session.scalars(
        sa.select(BuyerLimitDecision)
        .where(BuyerLimitDecision.insurer == insurer)
        .order_by(BuyerLimitDecision.id)
    ).all()
    latest: dict[tuple[str, str], BuyerLimitDecision] = {}
    for r in rows:
        latest[(r.firm_usc, r.buyer_id)] = r
    return LimitBook(
        (r.firm_usc, r.buyer_id, r.country_iso3, r.granted_usd)
        for r in latest.values()
        if r.granted_usd > 0
    )


def category_of(countries: CountryTable, iso3: str) -> str:
    """OECD category of a country (``"7"``-like decline when not in the table: no limit)."""
    return countries.lookup(iso3).category if iso3 in countries else "unclassified"


def reasons_of(row: dict[str, Any], detail: bool) -> list[dict[str, Any]]:
    """Return the graded row's reasons; without ``detail`` the values (exporters' data) are withheld."""
    raw = row.get("reasons")
    items = json.loads(raw) if isinstance(raw, str) and raw else []
    if detail:
        return items
    return [{"feature": r["feature"]} for r in items]
