"""Ingestion: validate raw tables against their contracts, write clean tables and a quarantine.

``ingest(RAW, CLEAN)`` reads ``RAW/<table>/part-NNNNN.parquet`` one part file at a time (so a
200,000-firm world never needs a whole table in memory), and for every part:

1. checks the file is usable at all (readable Parquet, every spec column present with a
   compatible physical type) - otherwise ``UnusableTableError``, before anything is written;
2. converts the columns to their logical types (values that cannot be converted, e.g. an
   unparseable date, fail their row);
3. validates the rows with the table's pandera schema (``features.contracts.schema_for``), lazily,
   including the USCC check and references (``usc_code`` in ``firms``, ``loan_id`` in ``loans``);
4. flags key duplicates across all parts of the table: the first row with a key is kept, a
   later exact copy is a ``duplicate``, a later row with the same key but other content a
   ``duplicate_key``;
5. writes accepted rows to ``CLEAN/<table>/part-NNNNN.parquet`` (spec logical types) and failing
   rows, as read, to ``CLEAN/quarantine/<table>/part-NNNNN.parquet`` with ``_reason`` (all
   reasons, ``"; "``-joined), ``_source`` and ``_row``.

``CLEAN/ingest_report.json`` holds per table ``read``, ``accepted``, ``quarantined`` (always
``read == accepted + quarantined``), ``by_reason`` and ``warnings``, plus ``totals``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from features import contracts, io, uscc
from features.feature_availability import SnapshotConfig
from features.tables import LATE_CAPABLE, TABLES, TableSpec

logger = logging.getLogger(__name__)

#: Tables that must be present; the others are optional sources.
REQUIRED = ("firms",)
#: Ingestion order: firms first (the reference set of every other table), then the spec order
#: (which has loans before loan_repayments).
ORDER: tuple[str, ...] = ("firms", *(t for t in TABLES if t != "firms"))
assert all(
    ORDER.index(target.split(".")[0]) < ORDER.index(name)
    for name, spec in TABLES.items()
    for target in spec.references.values()
), "a table must come after every table it references"
#: Key sets collected while ingesting a table, for the tables that reference it.
REFERENCED: dict[str, str] = {
    "firms": "usc_code",
    "buyers": "buyer_id",
    "loans": "loan_id",
    "insurance_policies": "policy_id",
}
REPORT_FILE = "ingest_report.json"
#: Rows validated at a time: bounds memory for part files of any size (peak RSS about 0.85 GB
#: on the 20,000-firm benchmark world; 2,000,000 rows: 1.0 GB, 500,000: 0.66 GB).
BATCH_ROWS = 1_000_000
QUARANTINE = "quarantine"
#: Time zone of the platform's local dates.
CHINA_TZ = "Asia/Shanghai"
# Timestamps pandas can hold at nanosecond resolution.
_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max


class UnusableTableError(Exception):
    """A raw file cannot be used at all (unreadable, a column missing or of the wrong type)."""


def _one_line(exc: BaseException) -> str:
    # Arrow messages span lines; the CLI prints errors as one line.
    return " ".join(str(exc).split())


def _is_string(t: pa_arrow.DataType) -> bool:
    if pa_arrow.types.is_dictionary(t):
        return _is_string(t.value_type)
    return bool(
        pa_arrow.types.is_string(t)
        or pa_arrow.types.is_large_string(t)
        or pa_arrow.types.is_string_view(t)
    )


def _is_int(t: pa_arrow.DataType) -> bool:
    return bool(pa_arrow.types.is_integer(t))


def _is_float(t: pa_arrow.DataType) -> bool:
    return bool(pa_arrow.types.is_floating(t))


# Physical (Parquet / Arrow) types accepted for each logical type. Integers may arrive as
# floats (pandas writes an integer column with gaps as float64) and dates as ISO strings (as
# in many real extracts); values that do not convert fail their row, not the file.
_ACCEPTS: dict[str, tuple[str, Any]] = {
    "str": ("string", _is_string),
    "category": ("string", _is_string),
    "int": ("integer", lambda t: _is_int(t) or _is_float(t)),
    "float": (
        "floating point",
        lambda t: _is_float(t) or _is_int(t) or pa_arrow.types.is_decimal(t),
    ),
    "bool": ("boolean", pa_arrow.types.is_boolean),
    "date": (
        "timestamp",
        lambda t: pa_arrow.types.is_timestamp(t) or pa_arrow.types.is_date(t) or _is_string(t),
    ),
}


def check_file(path: Path, spec: TableSpec) -> list[str]:
    """Check that a raw part file can be used: readable, every column present and typed.

    Parameters
    ----------
    path : Path
        A ``part-*.parquet`` file.
    spec : TableSpec
        Its table's spec.

    Returns
    -------
    list of str
        Names of extra columns (ignored by ingestion).

    Raises
    ------
    UnusableTableError
        ``"<file>: column <col>: expected <type>, got <type>"``, or ``"<file>: not a readable
        Parquet file (...)"``.
    """
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise UnusableTableError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc
    for col in spec.columns:
        expected, accepts = _ACCEPTS[col.dtype]
        if col.name not in schema.names:
            raise UnusableTableError(f"{path}: column {col.name}: expected {expected}, got missing")
        got = schema.field(col.name).type
        if not (pa_arrow.types.is_null(got) or accepts(got)):
            raise UnusableTableError(f"{path}: column {col.name}: expected {expected}, got {got}")
    return [n for n in schema.names if n not in spec.column_names]


def read_batches(
    path: Path, spec: TableSpec, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Read a raw part file in batches of row groups (memory stays bounded for huge files).

    Parameters
    ----------
    path : Path
        A ``part-*.parquet`` file that passed ``check_file``.
    spec : TableSpec
        Its table's spec (only its columns are read).
    batch_rows : int
        Rows per batch.

    Yields
    ------
    (int, pandas.DataFrame)
        Position of the batch's first row in the file, and the batch (``RangeIndex``). An
        empty file yields one empty frame.

    Raises
    ------
    UnusableTableError
        If the data pages cannot be read.
    """
    try:
        reader = pq.ParquetFile(path)
        if reader.metadata.num_rows == 0:
            yield 0, reader.read(columns=spec.column_names).to_pandas().reset_index(drop=True)
            return
        offset = 0
        for batch in reader.iter_batches(batch_size=batch_rows, columns=spec.column_names):
            frame = pa_arrow.Table.from_batches([batch]).to_pandas().reset_index(drop=True)
            yield offset, frame
            offset += len(frame)
    except (OSError, pa_arrow.ArrowException) as exc:  # footer fine, data pages not
        raise UnusableTableError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc


def _problems(
    frame: pd.DataFrame, mask: pd.Series, column: str, kind: str, expected: str
) -> pd.DataFrame:
    # Reasons for the (few) values of ``column`` that failed conversion.
    bad = frame.loc[mask, column]
    reasons = [f"{column}: {kind}: expected {expected}, got {v}" for v in bad]
    return pd.DataFrame(
        {"index": bad.index, "kind": f"{column}: {kind}", "reason": reasons, "column": column}
    )


def _parse_dates(s: pd.Series) -> pd.Series:
    # Dates are local dates of Shenzhen firms: timezone-aware values become China time.
    iso = pd.api.types.infer_dtype(s, skipna=True) == "string"
    try:
        parsed = pd.to_datetime(s, format="ISO8601" if iso else None, errors="coerce")
    except ValueError:  # mixed UTC offsets in one column
        parsed = pd.to_datetime(s, format="ISO8601" if iso else None, errors="coerce", utc=True)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert(CHINA_TZ).dt.tz_localize(None)
    return parsed


def to_logical(
    raw: pd.DataFrame, spec: TableSpec
) -> tuple[pd.DataFrame, pd.DataFrame, Counter[str]]:
    """Convert a raw part to the nullable logical dtypes the raw schema validates.

    Parameters
    ----------
    raw : pandas.DataFrame
        The part as read (spec columns).
    spec : TableSpec
        Its table's spec.

    Returns
    -------
    logical : pandas.DataFrame
        Same index; values that could not be converted are missing.
    problems : pandas.DataFrame
        ``index``, ``kind``, ``reason``, ``column`` of the values that could not be converted.
    warnings : collections.Counter
        Conversions that changed a value without failing it (time of day dropped).
    """
    out: dict[str, pd.Series] = {}
    problems: list[pd.DataFrame] = []
    warnings: Counter[str] = Counter()
    for col in spec.columns:
        s = raw[col.name]
        if col.dtype in ("str", "category"):
            out[col.name] = s.astype("str")
        elif col.dtype == "int":
            if pd.api.types.is_float_dtype(s.dtype):
                whole = np.isfinite(s) & (s == np.floor(s)) & (s.abs() < 2.0**63)
                bad = s.notna() & ~whole
                if bad.any():
                    problems.append(_problems(raw, bad, col.name, "type", "an integer"))
                s = s.where(~bad)
            out[col.name] = s.astype("Int64")
        elif col.dtype == "float":
            out[col.name] = s.astype("float64")
        elif col.dtype == "bool":
            out[col.name] = s.astype("boolean")
        else:  # date
            parsed = _parse_dates(s)
            bad = s.notna() & (parsed.isna() | (parsed < _NS_MIN) | (parsed > _NS_MAX))
            if bad.any():
                problems.append(_problems(raw, bad, col.name, "type", "a date YYYY-MM-DD"))
            parsed = parsed.where(~bad)
            normal = parsed.dt.normalize()
            timed = int((parsed.notna() & (normal != parsed)).sum())
            if timed:
                warnings[f"{col.name}: time of day dropped"] += timed
            out[col.name] = normal.astype("datetime64[ns]")
    logical = pd.DataFrame(out, index=raw.index)
    empty = pd.DataFrame(columns=["index", "kind", "reason", "column"])
    return logical, (pd.concat(problems, ignore_index=True) if problems else empty), warnings


def validate_part(
    logical: pd.DataFrame, schema: pa.DataFrameSchema, problems: pd.DataFrame
) -> pd.DataFrame:
    """Validate a converted part with pandera, lazily, and explain every failing cell.

    Parameters
    ----------
    logical : pandas.DataFrame
        Output of ``to_logical``.
    schema : pandera.DataFrameSchema
        ``schema_for(table, raw=True, references=...)``.
    problems : pandas.DataFrame
        Conversion problems of the same part; a value that failed conversion is reported once
        (not again as a missing value).

    Returns
    -------
    pandas.DataFrame
        ``index``, ``kind``, ``reason`` of every failing cell, conversion problems included.
    """
    try:
        schema.validate(logical, lazy=True, inplace=True)
        found = pd.DataFrame(columns=["index", "kind", "reason"])
    except pa.errors.SchemaErrors as exc:
        found = contracts.failure_reasons(schema, exc.failure_cases)
    if len(problems):
        converted = set(zip(problems["index"], problems["column"] + ": null", strict=True))
        keep = [(i, k) not in converted for i, k in zip(found["index"], found["kind"], strict=True)]
        found = pd.concat([problems[["index", "kind", "reason"]], found[keep]], ignore_index=True)
    return found


class KeyTracker:
    """Keys seen so far in a table, across its part files, as 64-bit hashes.

    The first row with a key claims it; a later row with the same key is an exact
    ``duplicate`` when its whole content hashes the same, else a ``duplicate_key``. Hashes keep
    memory at 16 bytes per key (a 64-bit collision among 10^8 keys has odds below 10^-3).

    Parameters
    ----------
    key : sequence of str
        The table's key columns.
    """

    def __init__(self, key: tuple[str, ...], nullable: tuple[str, ...] = ()) -> None:
        self.key = key
        # A nullable key column (fx_receipts.buyer_id) is part of the key even when null.
        self.required = [k for k in key if k not in nullable]
        self._keys = np.empty(0, dtype=np.uint64)  # sorted key hashes
        self._rows = np.empty(0, dtype=np.uint64)  # row hash of each key's first row

    def check(self, logical: pd.DataFrame) -> pd.DataFrame:
        """Flag the duplicates of one part and remember its new keys.

        Parameters
        ----------
        logical : pandas.DataFrame
            The part, converted (row order = read order).

        Returns
        -------
        pandas.DataFrame
            ``index``, ``kind``, ``reason`` of the duplicate rows.
        """
        has_key = logical[self.required].notna().all(axis=1).to_numpy()
        part = logical[has_key]
        kh = pd.util.hash_pandas_object(part[list(self.key)], index=False).to_numpy()
        rh = pd.util.hash_pandas_object(part, index=False).to_numpy()
        # Earlier parts.
        seen = np.zeros(len(kh), dtype=bool)
        first_rh = np.zeros(len(kh), dtype=np.uint64)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, kh), len(self._keys) - 1)
            seen = self._keys[pos] == kh
            first_rh = np.where(seen, self._rows[pos], first_rh)
        # This part: the first row of each new key claims it.
        codes, _ = pd.factorize(kh)
        _, first_pos = np.unique(codes, return_index=True)
        claimer = first_pos[codes]
        within = (claimer != np.arange(len(kh))) & ~seen
        first_rh = np.where(within, rh[claimer], first_rh)
        dup = seen | within
        exact = dup & (rh == first_rh)
        new = ~dup
        keys = np.concatenate([self._keys, kh[new]])
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = np.concatenate([self._rows, rh[new]])[order]
        index = part.index[dup]
        key_text = ", ".join(self.key)
        reasons = np.where(exact[dup], "duplicate", f"duplicate of key ({key_text})")
        kinds = np.where(exact[dup], "duplicate", "duplicate_key")
        return pd.DataFrame({"index": index, "kind": kinds, "reason": reasons})


def late_lag(spec: TableSpec) -> int | None:
    """Publication lag in days of a table whose rows carry ``received_date`` (else None)."""
    if spec.name not in LATE_CAPABLE:
        return None
    return SnapshotConfig.load().lag(spec.name)


def late_rows(logical: pd.DataFrame, lag: int | None) -> pd.DataFrame:
    """Rows that reached the platform after their publication lag (late arrivals).

    The snapshot makes a monthly row visible on a fixed day (period end + lag), so a row that
    arrived later would leak into snapshots dated before its arrival: it is quarantined (the
    report counts it under ``received_date: late``), and the feed owner resends it on time.

    Parameters
    ----------
    logical : pandas.DataFrame
        A converted part with ``period`` and ``received_date``.
    lag : int or None
        The table's lag in days; None for tables without ``received_date``.

    Returns
    -------
    pandas.DataFrame
        ``index``, ``kind``, ``reason`` of the late rows.
    """
    if lag is None or not len(logical):
        return pd.DataFrame(columns=["index", "kind", "reason"])
    period = pd.to_datetime(logical["period"], format="%Y-%m", errors="coerce")
    due = period + pd.offsets.MonthEnd(0) + pd.Timedelta(days=lag)
    received = logical["received_date"]
    late = (received > due).fillna(False).to_numpy(dtype=bool)
    idx = logical.index[late]
    reasons = [
        f"received_date: late: expected on or before {d:%Y-%m-%d} (period end + {lag} days), "
        f"got {r:%Y-%m-%d}"
        for d, r in zip(due[late], received[late], strict=True)
    ]
    return pd.DataFrame({"index": idx, "kind": "received_date: late", "reason": reasons})


def _clean(logical: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    # Accepted rows have no missing values in non-nullable columns: cast to the clean dtypes.
    dtypes = {
        c.name: contracts.CLEAN_DTYPES[c.dtype]
        for c in spec.columns
        if not (c.nullable and c.dtype in ("int", "bool"))
    }
    return logical.astype(dtypes).reset_index(drop=True)


def _clear(folder: Path) -> None:
    # Remove the part files of an earlier run so a table never mixes runs.
    for old in folder.glob("part-*.parquet"):
        old.unlink()


def _ingest_table(
    spec: TableSpec,
    files: list[Path],
    raw_dir: Path,
    out_dir: Path,
    keysets: dict[str, pd.Index],
    bar: Any,
    batch_rows: int,
) -> dict[str, Any]:
    warnings: Counter[str] = Counter()
    refs = {}
    for col, target in spec.references.items():
        if target.split(".")[0] in keysets:
            refs[col] = keysets[target.split(".")[0]]
        else:
            warnings[f"{col}: not checked against {target} (table absent)"] += 1
    schema = contracts.schema_for(spec.name, raw=True, references=refs)
    tracker = KeyTracker(spec.key, tuple(c.name for c in spec.columns if c.nullable))
    lag = late_lag(spec)
    clean_dir, q_dir = (
        io.table_dir(out_dir, spec.name),
        io.table_dir(out_dir / QUARANTINE, spec.name),
    )
    _clear(clean_dir)
    _clear(q_dir)
    counts: dict[str, Any] = {"read": 0, "accepted": 0, "quarantined": 0}
    by_reason: Counter[str] = Counter()
    collect = REFERENCED.get(spec.name)
    collected: list[np.ndarray] = []
    started = time.perf_counter()
    out_part = 0  # one output part per batch: per raw part unless it exceeds batch_rows
    for path in files:
        for extra in check_file(path, spec):
            warnings[f"extra column ignored: {extra}"] += 1
        source = path.relative_to(raw_dir).as_posix()
        for offset, raw in read_batches(path, spec, batch_rows):
            logical, problems, conv_warnings = to_logical(raw, spec)
            warnings.update(conv_warnings)
            found = pd.concat(
                [
                    validate_part(logical, schema, problems),
                    tracker.check(logical),
                    late_rows(logical, lag),
                ],
                ignore_index=True,
            )
            bad = np.zeros(len(raw), dtype=bool)
            bad[found["index"].to_numpy(dtype=np.int64)] = True
            by_reason.update(found["kind"].tolist())
            good = logical[~bad]
            if "usc_code" in spec.column_names:
                pilot = int(good["usc_code"].isin(uscc.PILOT_EXCEPTIONS).sum())
                if pilot:
                    warnings["usc_code: pilot-era code accepted without check character"] += pilot
            if collect:
                # A referenced key exists once it appears with a usable value, even in a row
                # quarantined for another reason (the firm exists; its record has a fault).
                values = logical[collect].dropna()
                if collect == "usc_code":
                    values = values[contracts.valid_uscc(values)]
                collected.append(values.to_numpy(dtype=object))
            io.write_table(_clean(good, spec), out_dir, spec.name, out_part)
            if bad.any():
                reasons = found.groupby("index", sort=True)["reason"].agg("; ".join)
                quarantined = raw[bad].copy()
                quarantined["_reason"] = reasons.reindex(quarantined.index).to_numpy()
                quarantined["_source"] = source
                quarantined["_row"] = offset + quarantined.index.to_numpy(dtype=np.int64)
                io.write_table(
                    quarantined.reset_index(drop=True), out_dir / QUARANTINE, spec.name, out_part
                )
            counts["read"] += len(raw)
            counts["accepted"] += int((~bad).sum())
            counts["quarantined"] += int(bad.sum())
            out_part += 1
        if bar is not None:
            bar.update(1)
    if counts["read"] != counts["accepted"] + counts["quarantined"]:
        raise AssertionError(f"{spec.name}: counts do not reconcile: {counts}")
    if collect:
        keys = np.concatenate(collected) if collected else np.empty(0, dtype=object)
        keysets[spec.name] = pd.Index(pd.unique(keys), dtype="str")
    return {
        "status": "ok",
        "files": len(files),
        **counts,
        "by_reason": dict(sorted(by_reason.items())),
        "warnings": dict(sorted(warnings.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }


def ingest(
    raw_dir: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    *,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, Any]:
    """Validate every raw table, write clean tables, the quarantine and the report.

    Parameters
    ----------
    raw_dir : str or Path
        Folder of raw tables (``<table>/part-NNNNN.parquet``).
    out_dir : str or Path
        Folder for clean tables, ``quarantine/`` and ``ingest_report.json`` (created).
    progress : bool, default True
        Show a progress bar over part files.
    batch_rows : int, default BATCH_ROWS
        Rows validated at a time; a larger part file is read in batches of row groups (its
        clean and quarantine output then spans several part files).

    Returns
    -------
    dict
        The report: one entry per table (``status`` "ok" or "absent", ``files``, ``read``,
        ``accepted``, ``quarantined``, ``by_reason``, ``warnings``, ``seconds``) and ``totals``.

    Raises
    ------
    UnusableTableError
        If ``firms`` is absent or a part file cannot be used at all; raised before anything
        is written.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = {name: io.part_files(raw_dir, name) for name in ORDER}
    for name in REQUIRED:
        if not files[name]:
            raise UnusableTableError(
                f"{io.table_dir(raw_dir, name)}: table {name} is required, got no part-*.parquet files"
            )
    # Fail on an unusable file before writing anything (reads only the Parquet footers).
    for name, paths in files.items():
        for path in paths:
            check_file(path, TABLES[name])
    known = set(ORDER)
    for folder in sorted(p for p in raw_dir.iterdir() if p.is_dir() and p.name not in known):
        logger.warning("ignoring %s: not a table of features.tables", folder)

    out_dir.mkdir(parents=True, exist_ok=True)
    # An earlier report must not outlive tables this run is about to rewrite.
    (out_dir / REPORT_FILE).unlink(missing_ok=True)
    report: dict[str, Any] = {}
    keysets: dict[str, pd.Index] = {}
    bar = tqdm(
        total=sum(len(p) for p in files.values()), desc="ingest", unit="file", disable=not progress
    )
    with bar:
        for name in ORDER:
            if not files[name]:
                # Drop an earlier run's output so readers never see a stale table.
                _clear(io.table_dir(out_dir, name))
                _clear(io.table_dir(out_dir / QUARANTINE, name))
                report[name] = {
                    "status": "absent",
                    "files": 0,
                    "read": 0,
                    "accepted": 0,
                    "quarantined": 0,
                    "by_reason": {},
                    "warnings": {},
                }
                continue
            bar.set_description(f"ingest {name}")
            report[name] = _ingest_table(
                TABLES[name], files[name], raw_dir, out_dir, keysets, bar, batch_rows
            )
    totals = {k: sum(t[k] for t in report.values()) for k in ("read", "accepted", "quarantined")}
    if totals["read"] != totals["accepted"] + totals["quarantined"]:
        raise AssertionError(f"ingest counts do not reconcile: {totals}")
    report["totals"] = totals
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
