"""Local fixtures of the features tests: small hand-built tables that satisfy every contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import io, uscc
from features.tables import BUYER_ID_REGEX, PERIOD_REGEX, TABLES, Column

#: A value matching each pattern of the spec (the contracts test checks they match).
PATTERN_SAMPLES = {
    PERIOD_REGEX: "2021-03",
    r"^[A-Z]{3}$": "USA",
    r"^(9610|9710|9810|1210|0110)(,(9610|9710|9810|1210|0110))*$": "9610,9710",
    BUYER_ID_REGEX: "BYUSA000000",
}
#: Identifier columns that are the whole key of their table (unique per row).
ID_COLUMNS = ("loan_id", "case_id", "penalty_id", "policy_id", "store_id", "claim_id")

Factory = Callable[..., pd.DataFrame]


def _column_values(col: Column, n: int, codes: list[str], table: str = "") -> pd.Series:
    if col.name == "usc_code":
        return pd.Series(codes[:n], dtype="str")
    if col.name == "buyer_id":  # row i's buyer is buyers row i, so references hold
        return pd.Series([f"BYUSA{i:06d}" for i in range(n)], dtype="str")
    if col.name == "received_date":  # arrived in time
        return pd.Series([pd.NaT] * n, dtype="datetime64[ns]")
    if col.name == "period" and TABLES[table].key == ("period",):
        return pd.Series([str(pd.Period("2021-01", "M") + i) for i in range(n)], dtype="str")
    if col.name in ID_COLUMNS:
        prefix = {"loan_id": "L"}.get(col.name, col.name[0].upper())
        return pd.Series([f"{prefix}{i:05d}" for i in range(n)], dtype="str")
    if col.dtype == "category":
        allowed = col.allowed or ()
        return pd.Series([allowed[i % len(allowed)] for i in range(n)], dtype="str")
    if col.dtype == "str":
        value = PATTERN_SAMPLES[col.regex] if col.regex else f"{col.name} value"
        return pd.Series([value] * n, dtype="str")
    if col.dtype == "int":
        low = int(col.ge) if col.ge is not None else 0
        high = int(col.le) if col.le is not None else low + 10
        return pd.Series([low + i % (high - low + 1) for i in range(n)], dtype="int64")
    if col.dtype == "float":
        lo = col.ge if col.ge is not None else 0.0
        hi = col.le if col.le is not None else lo + 1000.0
        return pd.Series(np.linspace(lo, hi, n), dtype="float64")
    if col.dtype == "bool":
        return pd.Series([i % 2 == 0 for i in range(n)], dtype="bool")
    return pd.Series(pd.date_range("2020-01-01", periods=n, freq="D"), dtype="datetime64[ns]")


@pytest.fixture(scope="session")
def firm_codes() -> list[str]:
    """Forty valid, distinct USCCs (the firms of every hand-built table)."""
    return uscc.generate(np.random.default_rng(3), 40)


@pytest.fixture(scope="session")
def make_valid(firm_codes: list[str]) -> Factory:
    """Factory ``make_valid(table, n=5)``: ``n`` rows of ``table`` that pass its contract.

    Row ``i`` belongs to firm ``firm_codes[i]`` and, for loan repayments, to loan ``L{i:05d}``,
    so tables built with the same ``n`` reference each other.
    """

    def make(table: str, n: int = 5) -> pd.DataFrame:
        spec = TABLES[table]
        return pd.DataFrame({c.name: _column_values(c, n, firm_codes, table) for c in spec.columns})

    return make


@pytest.fixture
def raw_world(tmp_path: Path, make_valid: Factory) -> Callable[..., Path]:
    """Factory ``raw_world(overrides=None, n=5, name="raw")``: write a raw world to ``tmp_path/name``.

    ``overrides`` maps a table name to the frame (or list of part frames) to write instead of
    the valid default; ``None`` as a value leaves the table out.
    """

    def build(overrides: dict[str, object] | None = None, n: int = 5, name: str = "raw") -> Path:
        raw = tmp_path / name
        overrides = overrides or {}
        for table in TABLES:
            frames = overrides.get(table, make_valid(table, n))
            if frames is None:
                continue
            for part, frame in enumerate(frames if isinstance(frames, list) else [frames]):
                io.write_table(frame, raw, table, part)
        return raw

    return build
