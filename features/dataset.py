"""Labelled training set: (firm, as-of) rows with the 12-month default label.

Definitions (docs/interfaces.md):

- a firm's ``default_date`` is the earliest of the last day of the first ``loan_repayments``
  month with ``days_past_due >= 90`` and the ``open_date`` of the first ``court_records`` row of
  type ``enforcement`` or ``dishonest_debtor``;
- at as-of ``T`` the label is 1 when ``T < default_date <= T + 12 months``;
- firms already in default (``default_date <= T``) and firms not live at ``T`` (registered on or
  after ``T`` or deregistered before it) have no row.

Labels use event dates (outcomes, what truly happened); features use availability dates (what
was known at ``T``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.catalog import Catalog
from features.default_status import load_default_status
from features.feature_availability import SnapshotConfig
from features.feature_builders import prepare
from features.snapshot import CleanTables, default_catalog, default_config, snapshot_from_prepared

log = logging.getLogger(__name__)

#: The default event (``features/config/default_status.yaml``, shared with serving).
_LABEL = load_default_status().label
#: Days past due at which a loan is in default.
DEFAULT_DPD = _LABEL.dpd_days
#: Court record types that are default events.
DEFAULT_COURT_TYPES = tuple(_LABEL.court_types)
#: Months after the as-of date in which a default counts for the label.
HORIZON_MONTHS = 12
#: Months between as-of dates for each ``every``.
STEPS = {"month": 1, "quarter": 3}


def default_events(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Each firm's first default date.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Clean tables; uses ``loan_repayments`` and ``court_records`` when present.

    Returns
    -------
    pandas.DataFrame
        ``usc_code`` (str) and ``default_date`` (datetime64[ns]), one row per firm that ever
        defaulted, sorted by ``usc_code``.
    """
    parts = []
    rp = tables.get("loan_repayments")
    if rp is not None and len(rp):
        late = rp.loc[rp["days_past_due"] >= DEFAULT_DPD, ["usc_code", "period"]]
        ends = pd.to_datetime(late["period"], format="%Y-%m") + pd.offsets.MonthEnd(0)
        parts.append(pd.DataFrame({"usc_code": late["usc_code"], "default_date": ends}))
    cr = tables.get("court_records")
    if cr is not None and len(cr):
        hit = cr.loc[cr["record_type"].isin(DEFAULT_COURT_TYPES), ["usc_code", "open_date"]]
        parts.append(hit.rename(columns={"open_date": "default_date"}))
    if not parts:
        return pd.DataFrame(
            {"usc_code": pd.Series(dtype="str"), "default_date": pd.Series(dtype="datetime64[ns]")}
        )
    events = pd.concat(parts, ignore_index=True)
    out = events.groupby("usc_code", sort=True)["default_date"].min().reset_index()
    out["usc_code"] = out["usc_code"].astype("str")
    out["default_date"] = out["default_date"].astype("datetime64[ns]")
    return out


def as_of_dates(start: date, end: date, every: str = "quarter") -> list[date]:
    """As-of dates from ``start`` to ``end`` inclusive, ``every`` month or quarter apart.

    Parameters
    ----------
    start, end : datetime.date
        First and last allowed date.
    every : {"month", "quarter"}
        Spacing.

    Returns
    -------
    list of datetime.date
    """
    if every not in STEPS:
        raise ValueError(f"every must be one of {sorted(STEPS)}; got {every!r}")
    if end < start:
        raise ValueError(f"end must not precede start; got start={start}, end={end}")
    out: list[date] = []
    k = 0
    while True:
        d = (pd.Timestamp(start) + pd.DateOffset(months=STEPS[every] * k)).date()
        if d > end:
            return out
        out.append(d)
        k += 1


def label_rows(snapshot: pd.DataFrame, events: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Drop firms already in default at ``as_of`` and add ``label`` and ``default_date``.

    Parameters
    ----------
    snapshot : pandas.DataFrame
        Snapshot at ``as_of`` (live firms).
    events : pandas.DataFrame
        Output of :func:`default_events`.
    as_of : datetime.date
        The snapshot's date.

    Returns
    -------
    pandas.DataFrame
        ``usc_code``, ``as_of``, ``label``, ``default_date``, ``name``, then the features.
    """
    t = pd.Timestamp(as_of)
    horizon = t + pd.DateOffset(months=HORIZON_MONTHS)
    dd = snapshot["usc_code"].map(events.set_index("usc_code")["default_date"])
    dd = pd.to_datetime(dd).astype("datetime64[ns]")
    keep = ~(dd <= t).to_numpy()  # NaT (never defaults) compares False: kept
    rows = snapshot.loc[keep].reset_index(drop=True)
    dd = dd[keep].reset_index(drop=True)
    label = ((dd > t) & (dd <= horizon)).to_numpy()
    rows.insert(2, "label", label.astype(np.int64))
    rows.insert(3, "default_date", dd.where(label).astype("datetime64[ns]"))
    return rows


def build_dataset(
    tables: Mapping[str, pd.DataFrame],
    start: date,
    end: date,
    every: str = "quarter",
    catalog: Catalog | None = None,
    config: SnapshotConfig | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Build the labelled (firm, as-of) training set.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Clean tables.
    start, end : datetime.date
        First and last as-of date.
    every : {"month", "quarter"}
        Spacing of as-of dates.
    catalog : Catalog, optional
        Features (default: the shipped catalog).
    config : SnapshotConfig, optional
        Lags and parameters (default: shipped configuration).
    progress : bool
        Show a progress bar over the as-of dates.

    Returns
    -------
    pandas.DataFrame
        ``usc_code``, ``as_of``, ``label`` (int 0/1), ``default_date`` (NaT unless label 1),
        ``name``, then every catalog feature; sorted by ``as_of`` then ``usc_code``.
    """
    dates = as_of_dates(start, end, every)
    catalog = catalog or default_catalog()
    prep = prepare(tables, config or default_config())
    events = default_events(tables)
    last_seen = _last_observed(tables)
    frames = []
    for t in tqdm(dates, desc="as-of dates", disable=not progress):
        if (
            last_seen is not None
            and pd.Timestamp(t) + pd.DateOffset(months=HORIZON_MONTHS) > last_seen
        ):
            log.warning(
                "as-of %s: the 12-month outcome window passes the last observed month %s; "
                "labels there are censored",
                t,
                last_seen.date(),
            )
        frames.append(label_rows(snapshot_from_prepared(prep, t, catalog), events, t))
    out = pd.concat(frames, ignore_index=True)
    for spec in catalog:  # concat keeps categories only when identical; make sure
        if spec.dtype == "category":
            out[spec.name] = pd.Categorical(out[spec.name], categories=spec.categories)
    return out


def _last_observed(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp | None:
    """End of the last month with loan repayment status (the outcome data's horizon)."""
    rp = tables.get("loan_repayments")
    if rp is None or not len(rp):
        return None
    return pd.Timestamp(str(rp["period"].max())) + pd.offsets.MonthEnd(0)


def build_dataset_file(
    clean_dir: str | Path, start: date, end: date, every: str, out: str | Path
) -> Path:
    """Read the clean tables, build the training set and write it as Parquet.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    start, end : datetime.date
        First and last as-of date.
    every : {"month", "quarter"}
        Spacing of as-of dates.
    out : str or Path
        Parquet file to write (parent folders are created).

    Returns
    -------
    Path
        The file written.
    """
    data = build_dataset(CleanTables(clean_dir), start, end, every, progress=True)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_parquet(path, index=False)
    log.info(
        "training set: %d rows, %d as-of dates, default rate %.2f%% → %s",
        len(data),
        data["as_of"].nunique(),
        100 * data["label"].mean() if len(data) else 0.0,
        path,
    )
    return path
