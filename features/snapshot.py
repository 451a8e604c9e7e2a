"""Point-in-time feature snapshots: every live firm's catalog features as of a date.

``build_snapshot(tables, as_of)`` uses only records available on or before ``as_of`` (record
date + source lag, ``features/config/availability.yaml``); a firm is live at ``as_of`` when it
was registered before it and not deregistered before it. Columns: ``usc_code``, ``as_of``,
``name``, then every catalog feature in catalog order; category features carry the catalog's
fixed categories, every other feature is float64 with NaN where the source is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalog import Catalog, load_catalog
from features.feature_availability import SnapshotConfig
from features.feature_builders import NEEDED_COLUMNS, Prepared, compute_features, live_mask, prepare
from features.io import part_files, read_table
from features.tables import TABLES

log = logging.getLogger(__name__)

#: Identifier columns that precede the features.
ID_COLUMNS = ["usc_code", "as_of", "name"]
#: Units of quotient features, winsorised to their catalog bounds (NaN stays NaN).
WINSORISED_UNITS = frozenset({"ratio", "CV"})


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """Return the shipped catalog, read once per process (on first use, not at import)."""
    return load_catalog()


@lru_cache(maxsize=1)
def default_config() -> SnapshotConfig:
    """Return the shipped snapshot configuration, read once per process."""
    return SnapshotConfig.load()


class SnapshotError(ValueError):
    """The catalog asks for a feature the builder cannot make, or inputs are unusable."""


def load_clean(
    clean_dir: str | Path, columns: dict[str, list[str]] | None = None
) -> dict[str, pd.DataFrame]:
    """Read the clean tables the feature builder uses.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables (``CLEAN/<table>/part-*.parquet``).
    columns : dict, optional
        Columns to read per table; by default the columns the features need.

    Returns
    -------
    dict of str to pandas.DataFrame
        One frame per table present; ``firms`` is required.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``firms`` table.
    """
    lazy = CleanTables(clean_dir, columns)
    return {name: lazy[name] for name in lazy}


class CleanTables(Mapping[str, pd.DataFrame]):
    """Clean tables of a folder, read on access (only the columns the features need).

    Nothing is cached: :func:`features.feature_builders.prepare` reads each table once and
    releases it before the next, so only one raw table is in memory at a time.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables; must hold ``firms``.
    columns : dict, optional
        Columns to read per table; by default the columns the features need.
    """

    def __init__(self, clean_dir: str | Path, columns: dict[str, list[str]] | None = None) -> None:
        self.clean_dir = Path(clean_dir)
        self.columns = columns or NEEDED_COLUMNS
        if not part_files(self.clean_dir, "firms"):
            raise FileNotFoundError(f"{self.clean_dir / 'firms'}: no firms table in {clean_dir}")
        self._present = [n for n in TABLES if part_files(self.clean_dir, n)]
        for name in sorted(set(TABLES) - set(self._present)):
            log.warning("clean table %s is absent; its features are missing for every firm", name)

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._present:
            raise KeyError(name)
        return read_table(self.clean_dir, name, columns=self.columns.get(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._present)

    def __len__(self) -> int:
        return len(self._present)


def _assemble(
    prep: Prepared, values: dict[str, np.ndarray], as_of: date, catalog: Catalog
) -> pd.DataFrame:
    """Select live firms and lay the features out in catalog order with catalog dtypes."""
    unknown = [n for n in catalog.names if n not in values]
    if unknown:
        raise SnapshotError(f"catalog features the snapshot builder does not make: {unknown}")
    live = live_mask(prep, as_of)
    firms = prep.firms.loc[live]
    columns: dict[str, object] = {
        "usc_code": firms["usc_code"].to_numpy(),
        "as_of": np.full(int(live.sum()), np.datetime64(as_of, "ns")),
        "name": firms["name"].to_numpy(),
    }
    for spec in catalog:
        v = values[spec.name][live]
        if spec.dtype == "category":
            columns[spec.name] = pd.Categorical(v, categories=spec.categories)
        else:
            arr = np.asarray(v, dtype=np.float64)
            if spec.unit in WINSORISED_UNITS:  # quotients of small denominators explode
                arr = np.clip(arr, spec.lower, spec.upper)
            columns[spec.name] = arr
    out = pd.DataFrame(columns)
    out["usc_code"] = out["usc_code"].astype("str")
    out["name"] = out["name"].astype("str")
    return out


def build_snapshot(
    tables: Mapping[str, pd.DataFrame],
    as_of: date,
    catalog: Catalog | None = None,
    config: SnapshotConfig | None = None,
) -> pd.DataFrame:
    """Build the feature snapshot of every live firm at ``as_of``.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Clean tables (``load_clean`` or the lazy ``CleanTables``); absent tables count as empty.
    as_of : datetime.date
        Snapshot date.
    catalog : Catalog, optional
        Features to build (default: the shipped catalog).
    config : SnapshotConfig, optional
        Lags and parameters (default: the shipped configuration).

    Returns
    -------
    pandas.DataFrame
        ``usc_code``, ``as_of``, ``name``, then the catalog features; one row per live firm,
        sorted by ``usc_code``.
    """
    as_of = _as_date(as_of)
    catalog = catalog or default_catalog()
    prep = prepare(tables, config or default_config())
    return _assemble(prep, compute_features(prep, as_of), as_of, catalog)


def snapshot_from_prepared(prep: Prepared, as_of: date, catalog: Catalog) -> pd.DataFrame:
    """Snapshot at ``as_of`` from tables already prepared (many dates, one preparation).

    Parameters
    ----------
    prep : Prepared
        Output of ``features.feature_builders.prepare``.
    as_of : datetime.date
        Snapshot date.
    catalog : Catalog
        Features to lay out.

    Returns
    -------
    pandas.DataFrame
        As :func:`build_snapshot`.
    """
    as_of = _as_date(as_of)
    return _assemble(prep, compute_features(prep, as_of), as_of, catalog)


def _as_date(value: date | str | pd.Timestamp) -> date:
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, date):
        return value if type(value) is date else date(value.year, value.month, value.day)
    raise TypeError(f"as_of must be a date; got {type(value).__name__}")


def build_snapshot_file(clean_dir: str | Path, as_of: date, out: str | Path) -> Path:
    """Read the clean tables, build the snapshot at ``as_of`` and write it as Parquet.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    as_of : datetime.date
        Snapshot date.
    out : str or Path
        Parquet file to write (parent folders are created).

    Returns
    -------
    Path
        The file written.
    """
    snap = build_snapshot(CleanTables(clean_dir), as_of)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    snap.to_parquet(path, index=False)
    log.info(
        "snapshot at %s: %d firms, %d features → %s", as_of, len(snap), snap.shape[1] - 3, path
    )
    return path
