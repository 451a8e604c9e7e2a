"""Tables as banks have them: turning a labelled table into model features, or a clear refusal.

:func:`prepare_table` reads the target (0/1, or any two values with ``positive`` naming the
default), drops what cannot be a feature (the id and time columns, columns that look like row
ids, constant columns, categorical columns with more levels than ``table.max_category_levels``)
and says so in its notes, turns text that holds numbers into numbers and dates into days since
1970-01-01 (a ``<col>_days`` feature), and reads monotone constraints from an optional
column-direction file. Anything it cannot use raises :class:`TableError` naming the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Cells read as missing in any table (CSV or Parquet text columns).
MISSING_MARKERS = ["?", "", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-", "."]

_DIRECTIONS = {
    "increases_risk": 1,
    "+1": 1,
    "1": 1,
    "up": 1,
    "decreases_risk": -1,
    "-1": -1,
    "down": -1,
    "none": 0,
    "0": 0,
}


class TableError(ValueError):
    """A table (or one of its columns) the training cannot use; the message names the column."""


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV (optionally gzip/xz/bz2/zip-compressed) or Parquet table.

    Cells holding one of :data:`MISSING_MARKERS` (``?``, empty, ``NA``, …) are missing.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"table file {p} must exist; it does not")
    if p.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(p)
        for col in df.columns:
            if df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype):
                stripped = df[col].astype("string").str.strip()
                df[col] = df[col].where(~stripped.isin(MISSING_MARKERS))
        return df
    return pd.read_csv(p, na_values=MISSING_MARKERS, keep_default_na=True, skipinitialspace=True)


def labels(series: pd.Series, name: str, positive: str | None = None) -> np.ndarray:
    """0/1 labels from a target column (``positive``: the value that means default).

    Raises
    ------
    TableError
        Naming the column when values are missing or not two classes.
    """
    if series.isna().any():
        raise TableError(
            f"target {name} must have no missing values; got {int(series.isna().sum())}"
        )
    text = series.astype(str).str.strip()
    values = sorted(text.unique())
    if positive is not None:
        if positive not in values:
            raise TableError(f"target {name} has no value {positive!r}; values are {values[:5]}")
        if len(values) != 2:
            raise TableError(f"target {name} must have two values; got {values[:5]}")
        return (text == positive).to_numpy(dtype=int)
    if set(values) <= {"0", "1", "0.0", "1.0", "True", "False"}:
        return text.isin(["1", "1.0", "True"]).to_numpy(dtype=int)
    raise TableError(
        f"target {name} must be 0/1 (or give --positive VALUE); got values {values[:5]}"
    )


def read_directions(path: Path | str | None) -> dict[str, int]:
    """Monotone directions from a CSV/YAML file of ``column, direction`` rows.

    A direction is ``increases_risk`` (+1), ``decreases_risk`` (-1) or ``none`` (0).
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"direction file {p} must exist; it does not")
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        pairs = list(raw.items()) if isinstance(raw, dict) else []
    else:
        frame = pd.read_csv(p, dtype=str)
        if list(frame.columns[:2]) != ["column", "direction"]:
            raise TableError(f"direction file {p} must have columns 'column,direction'")
        pairs = list(zip(frame["column"], frame["direction"], strict=True))
    out: dict[str, int] = {}
    for col, direction in pairs:
        key = str(direction).strip().lower()
        if key not in _DIRECTIONS:
            raise TableError(
                f"direction of column {col} must be increases_risk, decreases_risk or none; "
                f"got {direction!r}"
            )
        out[str(col)] = _DIRECTIONS[key]
    return out


def _as_number(col: pd.Series) -> pd.Series | None:
    """Read the column as numbers when every present value is one (``"1,234.5"`` too)."""
    present = col.dropna().astype(str).str.strip().str.replace(",", "", regex=False)
    converted = pd.to_numeric(present, errors="coerce")
    if len(present) and converted.notna().all():
        return pd.to_numeric(
            col.astype("string").str.strip().str.replace(",", "", regex=False), errors="coerce"
        ).astype("float64")
    return None


def _as_date(col: pd.Series) -> pd.Series | None:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return pd.to_datetime(col)
    sample = col.dropna().astype(str).head(200)
    if not len(sample) or not sample.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return None
    parsed = pd.to_datetime(col, errors="coerce")
    return parsed if parsed.notna().sum() == col.notna().sum() else None


def prepare_table(
    df: pd.DataFrame,
    target: str,
    cfg: dict[str, Any],
    id_col: str | None = None,
    time_col: str | None = None,
    positive: str | None = None,
    directions: dict[str, int] | None = None,
) -> tuple[pd.DataFrame, list[str], np.ndarray, list[dict[str, str]]]:
    """Features, labels and notes of a table.

    Returns
    -------
    tuple
        ``(frame, feature names, labels, notes)``: ``frame`` holds the features (and the time
        column, untouched); notes list ``{column, action, reason}`` for every column dropped or
        converted.

    Raises
    ------
    TableError
        Naming the column: target missing or not two classes, too few rows of a class, a
        direction given for a column that is absent or not numeric, no usable feature.
    """
    tcfg = cfg["table"]
    for col in (target, id_col, time_col):
        if col is not None and col not in df.columns:
            raise TableError(
                f"table must have column {col!r}; columns are {list(df.columns)[:10]}…"
            )
    y = labels(df[target], target, positive)
    counts = np.bincount(y, minlength=2)
    need = int(tcfg["min_class_rows"])
    if counts.min() < need:
        kind = "defaults" if counts[1] < counts[0] else "non-defaults"
        raise TableError(
            f"target {target} has {int(counts.min())} {kind}; training needs at least {need}"
        )
    notes: list[dict[str, str]] = []
    out: dict[str, pd.Series] = {}
    n = len(df)
    for col in df.columns:
        if col in (target, id_col, time_col):
            continue
        s = df[col]
        if s.notna().sum() == 0 or s.nunique(dropna=True) <= 1:
            notes.append({"column": col, "action": "dropped", "reason": "constant or empty"})
            continue
        date = _as_date(s)
        if date is not None:
            name = f"{col}_days"
            out[name] = (date - pd.Timestamp("1970-01-01")).dt.days.astype("float64")
            notes.append(
                {"column": col, "action": f"converted to {name}", "reason": "days since 1970-01-01"}
            )
            continue
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            number = _as_number(s)
            if number is not None:
                out[col] = number
                notes.append({"column": col, "action": "read as numbers", "reason": "numeric text"})
                continue
            levels = s.nunique(dropna=True)
            if levels >= 0.9 * n:
                notes.append(
                    {"column": col, "action": "dropped", "reason": "a row id (unique per row)"}
                )
                continue
            if levels > int(tcfg["max_category_levels"]):
                notes.append(
                    {
                        "column": col,
                        "action": "dropped",
                        "reason": f"{levels} categories > table.max_category_levels",
                    }
                )
                continue
            out[col] = s.astype(object).where(s.notna(), None)
            continue
        if pd.api.types.is_integer_dtype(s.dtype) and s.is_unique and s.is_monotonic_increasing:
            notes.append({"column": col, "action": "dropped", "reason": "a row id (1, 2, 3, …)"})
            continue
        out[col] = s
    names = list(out)
    if not names:
        raise TableError("table must have at least one feature column besides target/id/time")
    for col, d in (directions or {}).items():
        if col not in out:
            raise TableError(f"direction file names column {col}; the table has no such feature")
        if d and not pd.api.types.is_numeric_dtype(out[col].dtype):
            raise TableError(f"direction for column {col}: only numeric columns can be monotone")
    frame = pd.DataFrame(out, index=df.index)
    if time_col is not None:
        frame[time_col] = df[time_col]
    return frame, names, y, notes


def apply_directions(features: list[Any], directions: dict[str, int] | None) -> list[Any]:
    """Set each numeric feature's monotone constraint from the directions (others unchanged)."""
    for f in features:
        if directions and f.name in directions and f.kind == "numeric":
            f.monotone = int(directions[f.name])
    return features


def read_master_scale(path: Path | str | None) -> list[dict[str, Any]] | None:
    """Read a table's own master scale: a YAML list of ``{grade, upper, supervision_class}``."""
    if path is None:
        return None
    import yaml

    from training.model_config import Band
    from training.scale import MasterScale

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"master scale file {p} must exist; it does not")
    raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    bands = raw.get("master_scale", raw) if isinstance(raw, dict) else raw
    if not isinstance(bands, list) or not bands:
        raise TableError(f"master scale file {p} must hold a list of bands")
    try:
        out = [Band.model_validate(b).model_dump() for b in bands]
        MasterScale(out)
    except ValueError as exc:
        raise TableError(f"master scale file {p} is not a valid scale: {exc}") from exc
    return out
