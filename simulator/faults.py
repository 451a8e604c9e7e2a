"""Data-quality faults injected into simulated raw tables, with their ground truth.

Most faults are an extra row placed right after the valid row it was made from: a copy with
one defect (or, for ``duplicate``, an exact copy). The exception is ``late_arrival``: a row of
a monthly feed (:data:`features.tables.LATE_CAPABLE`) that reached the platform after its
publication lag, so its ``received_date`` lies ``late_arrival_days`` beyond the last day of
its period plus the lag of ``features/config/availability.yaml``; the row itself is the fault
(no copy), because on time the platform did not have it. Removing the faulty rows therefore
gives back the table as the platform had it on time, and the ground truth names each faulty
row by its file and position so ingestion can be checked to quarantine exactly these rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.tables import LATE_CAPABLE, REFERENCE_DIR, TABLES
from features.uscc import ALPHABET

#: Kinds that rewrite the firm code (only for firm-keyed tables).
CODE_KINDS = ("uscc_check", "uscc_length", "unknown_firm")
LATE = "late_arrival"

#: Columns of the fault ground truth.
TRUTH_COLUMNS = ["table", "file", "_row", "fault", "column"]


def empty_truth() -> pd.DataFrame:
    """Return an empty ground-truth frame with the right types."""
    return pd.DataFrame(
        {
            "table": pd.Series([], dtype="str"),
            "file": pd.Series([], dtype="str"),
            "_row": pd.Series([], dtype="int64"),
            "fault": pd.Series([], dtype="str"),
            "column": pd.Series([], dtype="str"),
        }
    )


def applicable_kinds(table: str, cfg: dict[str, Any]) -> list[str]:
    """Fault kinds a table can carry.

    Parameters
    ----------
    table : str
        Table name.
    cfg : dict
        The ``faults`` section of the simulator configuration.

    Returns
    -------
    list of str
        Kinds in configuration order.
    """
    if table in cfg["duplicate_only_tables"]:
        return ["duplicate"]
    spec = TABLES[table]
    names = spec.column_names
    kinds = []
    for kind in cfg["mix"]:
        if kind in CODE_KINDS and not spec.firm_keyed:
            continue
        if kind == LATE and table not in LATE_CAPABLE:
            continue
        if kind == "negative_amount" and not _amount_column(table):
            continue
        if kind == "out_of_range" and table not in cfg["out_of_range"]:
            continue
        if kind == "bad_period" and "period" not in names:
            continue
        kinds.append(kind)
    return kinds


def _amount_column(table: str) -> str | None:
    """First non-negative float column of a table (the one negative amounts go into)."""
    for col in TABLES[table].columns:
        if col.dtype == "float" and col.ge == 0:
            return col.name
    return None


@cache
def _availability() -> dict[str, Any]:
    return yaml.safe_load((REFERENCE_DIR / "availability.yaml").read_text("utf-8"))


def publication_lag(table: str) -> int:
    """Publication lag in days of a monthly table (``features/config/availability.yaml``)."""
    return int(_availability()["tables"][table]["lag_days"])


def _late_dates(
    periods: pd.Series, table: str, rng: np.random.Generator, days: list[int]
) -> np.ndarray:
    """Arrival dates beyond period end + lag, by ``days`` (inclusive range)."""
    end = pd.to_datetime(periods, format="%Y-%m") + pd.offsets.MonthEnd(0)
    extra = rng.integers(days[0], days[1] + 1, len(periods))
    due = end + pd.Timedelta(days=publication_lag(table))
    return (due + pd.to_timedelta(extra, unit="D")).to_numpy()


def inject(
    df: pd.DataFrame,
    table: str,
    file: str,
    rate: float,
    rng: np.random.Generator,
    cfg: dict[str, Any],
    unknown_codes: Callable[[int], list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add faulty rows to one part of a table.

    Parameters
    ----------
    df : pandas.DataFrame
        The valid rows.
    table : str
        Table name.
    file : str
        The part file's path relative to the raw directory (recorded in the ground truth).
    rate : float
        Expected share of rows given a fault (of the valid rows).
    rng : numpy.random.Generator
        Random stream.
    cfg : dict
        The ``faults`` section of the simulator configuration.
    unknown_codes : callable
        ``unknown_codes(k)`` returns ``k`` valid USCCs that belong to no simulated firm.

    Returns
    -------
    rows : pandas.DataFrame
        Valid and faulty rows, each faulty row right after its source row.
    truth : pandas.DataFrame
        One row per fault: ``table``, ``file``, ``_row`` (0-based position in ``rows``),
        ``fault`` and ``column`` (the column made faulty; empty for duplicates).
    """
    n = len(df)
    kinds = applicable_kinds(table, cfg)
    if rate <= 0 or n == 0 or not kinds:
        return df, empty_truth()
    n_f = min(int(rng.binomial(n, rate)), n)
    if n_f == 0:
        return df, empty_truth()
    weights = np.array([cfg["mix"][k] for k in kinds], float)
    picked = rng.choice(n, n_f, replace=False)
    drawn = np.array(kinds, dtype=object)[rng.choice(len(kinds), n_f, p=weights / weights.sum())]
    late = np.sort(picked[drawn == LATE])
    if len(late):
        df = df.copy(deep=False)  # only received_date changes: no copy of the other columns
        received = df["received_date"].to_numpy(dtype="datetime64[ns]").copy()
        received[late] = _late_dates(df["period"].iloc[late], table, rng, cfg["late_arrival_days"])
        df["received_date"] = received
    order_src = np.argsort(picked[drawn != LATE], kind="stable")
    src = picked[drawn != LATE][order_src]
    kind = drawn[drawn != LATE][order_src]
    n_f = len(src)
    copies = df.iloc[src].reset_index(drop=True).copy()
    column = np.full(n_f, "", dtype=object)

    if TABLES[table].firm_keyed:
        _recode(copies, kind, column, rng, unknown_codes)
    _spoil_values(copies, kind, column, table, cfg, rng, df.dtypes)

    order = np.argsort(np.concatenate([np.arange(n) * 2, src * 2 + 1]), kind="stable")
    out = pd.concat([df, copies], ignore_index=True).iloc[order].reset_index(drop=True)
    # A late row keeps its place; the copies inserted before it shift it down.
    late_row = late + np.searchsorted(src, late, side="left")
    rows = np.concatenate([src + np.arange(n_f) + 1, late_row]).astype(np.int64)
    kinds_all = np.concatenate([kind, np.full(len(late), LATE, dtype=object)])
    cols = np.concatenate([column, np.full(len(late), "received_date", dtype=object)])
    by_row = np.argsort(rows, kind="stable")
    truth = pd.DataFrame(
        {
            "table": pd.Series([table] * len(rows), dtype="str"),
            "file": pd.Series([file] * len(rows), dtype="str"),
            "_row": rows[by_row],
            "fault": pd.Series(kinds_all[by_row], dtype="str"),
            "column": pd.Series(cols[by_row], dtype="str"),
        }
    )
    return out, truth


def _recode(
    copies: pd.DataFrame,
    kind: np.ndarray,
    column: np.ndarray,
    rng: np.random.Generator,
    unknown_codes: Callable[[int], list[str]],
) -> None:
    """Apply the code faults (bad check character, bad length, unknown firm) in place."""

    def rows_of(k: str) -> np.ndarray:
        return np.nonzero(kind == k)[0]

    usc = copies["usc_code"].to_numpy(dtype=object).copy()
    for r in rows_of("uscc_check"):
        code = usc[r]
        shift = int(rng.integers(1, len(ALPHABET)))
        usc[r] = code[:17] + ALPHABET[(ALPHABET.index(code[17]) + shift) % len(ALPHABET)]
        column[r] = "usc_code"
    for r in rows_of("uscc_length"):
        code = usc[r]
        usc[r] = code[:17] if rng.random() < 0.5 else code + ALPHABET[int(rng.integers(0, 10))]
        column[r] = "usc_code"
    unk = rows_of("unknown_firm")
    if len(unk):
        usc[unk] = unknown_codes(len(unk))
        column[unk] = "usc_code"
    copies["usc_code"] = pd.Series(usc, dtype="str")


def _spoil_values(
    copies: pd.DataFrame,
    kind: np.ndarray,
    column: np.ndarray,
    table: str,
    cfg: dict[str, Any],
    rng: np.random.Generator,
    dtypes: pd.Series,
) -> None:
    """Apply the value faults (negative amount, out of range, bad period) in place."""

    def rows_of(k: str) -> np.ndarray:
        return np.nonzero(kind == k)[0]

    neg = rows_of("negative_amount")
    if len(neg):
        col = _amount_column(table)
        assert col is not None
        vals = copies[col].to_numpy(dtype=float).copy()
        vals[neg] = -np.round(np.abs(vals[neg]) + 1.0, 2)
        copies[col] = vals
        column[neg] = col

    oor = rows_of("out_of_range")
    if len(oor):
        options = cfg["out_of_range"][table]
        names = list(options)
        pick = rng.integers(0, len(names), len(oor))
        for name_i, name in enumerate(names):
            rows = oor[pick == name_i]
            if len(rows):
                values = copies[name].to_numpy(dtype=object).copy()
                values[rows] = options[name]
                copies[name] = pd.Series(values).astype(dtypes[name])
                column[rows] = name

    bad = rows_of("bad_period")
    if len(bad):
        fmts = cfg["bad_periods"]
        periods = copies["period"].to_numpy(dtype=object).copy()
        which = rng.integers(0, len(fmts), len(bad))
        for r, f in zip(bad, which, strict=True):
            periods[r] = datetime.strptime(periods[r], "%Y-%m").strftime(fmts[f])
        copies["period"] = pd.Series(periods, dtype="str")
        column[bad] = "period"
