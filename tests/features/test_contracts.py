"""Contracts generated from features.tables: each rule triggers, clean tables pass."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pandera.pandas as pa
import pytest

from features import contracts
from features.tables import TABLES, Column

CELLS = [(t, c) for t, spec in TABLES.items() for c in spec.columns]


def _ids(cells: list[tuple[str, Column]]) -> list[str]:
    return [f"{t}.{c.name}" for t, c in cells]


def _raw_frame(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    dtypes = {c.name: contracts.RAW_DTYPES[c.dtype] for c in TABLES[table].columns}
    return frame.astype(dtypes)


def _reasons(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return contracts.failure_reasons(schema, exc.failure_cases)
    return pd.DataFrame(columns=["index", "kind", "reason"])


def _break(make_valid, table: str, column: str, value: object) -> pd.DataFrame:
    frame = _raw_frame(make_valid(table), table).astype({column: object})
    frame.loc[1, column] = value
    return _raw_frame(frame, table)


@pytest.mark.parametrize("table", list(TABLES))
def test_clean_table_passes(make_valid, table: str) -> None:
    frame = make_valid(table, 8)
    contracts.schema_for(table).validate(frame)
    contracts.schema_for(table, raw=True).validate(_raw_frame(frame, table))


NON_NULLABLE = [(t, c) for t, c in CELLS if not c.nullable]


@pytest.mark.parametrize(("table", "col"), NON_NULLABLE, ids=_ids(NON_NULLABLE))
def test_null_in_non_nullable_column(make_valid, table: str, col: Column) -> None:
    schema = contracts.schema_for(table, raw=True)
    found = _reasons(schema, _break(make_valid, table, col.name, None))
    assert found[["index", "kind"]].values.tolist() == [[1, f"{col.name}: null"]]
    assert found["reason"].iloc[0] == f"{col.name}: null: expected a value, got null"


NULLABLE = [(t, c) for t, c in CELLS if c.nullable]


@pytest.mark.parametrize(("table", "col"), NULLABLE, ids=_ids(NULLABLE))
def test_null_in_nullable_column_passes(make_valid, table: str, col: Column) -> None:
    schema = contracts.schema_for(table, raw=True)
    assert _reasons(schema, _break(make_valid, table, col.name, None)).empty


GE = [(t, c) for t, c in CELLS if c.ge is not None]
LE = [(t, c) for t, c in CELLS if c.le is not None]


@pytest.mark.parametrize(("table", "col"), GE, ids=_ids(GE))
def test_below_lower_bound(make_valid, table: str, col: Column) -> None:
    assert col.ge is not None
    value = col.ge - (1 if col.dtype == "int" else 0.5)
    found = _reasons(
        contracts.schema_for(table, raw=True), _break(make_valid, table, col.name, value)
    )
    assert found[["index", "kind"]].values.tolist() == [[1, f"{col.name}: range"]]
    assert found["reason"].iloc[0].startswith(f"{col.name}: range: expected >= ")
    assert (
        found["reason"]
        .iloc[0]
        .endswith(f"got {value!r}" if col.dtype == "float" else f"got {value}")
    )


@pytest.mark.parametrize(("table", "col"), LE, ids=_ids(LE))
def test_above_upper_bound(make_valid, table: str, col: Column) -> None:
    assert col.le is not None
    value = col.le + (1 if col.dtype == "int" else 0.7)
    found = _reasons(
        contracts.schema_for(table, raw=True), _break(make_valid, table, col.name, value)
    )
    assert found[["index", "kind"]].values.tolist() == [[1, f"{col.name}: range"]]
    assert found["reason"].iloc[0].startswith(f"{col.name}: range: expected <= ")


ALLOWED = [(t, c) for t, c in CELLS if c.allowed is not None]


@pytest.mark.parametrize(("table", "col"), ALLOWED, ids=_ids(ALLOWED))
def test_value_not_allowed(make_valid, table: str, col: Column) -> None:
    found = _reasons(
        contracts.schema_for(table, raw=True), _break(make_valid, table, col.name, "zz")
    )
    assert found[["index", "kind"]].values.tolist() == [[1, f"{col.name}: allowed"]]
    assert found["reason"].iloc[0].endswith("got zz")


REGEX = [(t, c) for t, c in CELLS if c.regex is not None]


@pytest.mark.parametrize(("table", "col"), REGEX, ids=_ids(REGEX))
def test_pattern_mismatch(make_valid, table: str, col: Column) -> None:
    found = _reasons(
        contracts.schema_for(table, raw=True), _break(make_valid, table, col.name, "2021/03")
    )
    assert found[["index", "kind"]].values.tolist() == [[1, f"{col.name}: format"]]


def test_period_reason_wording(make_valid) -> None:
    found = _reasons(
        contracts.schema_for("utilities", raw=True),
        _break(make_valid, "utilities", "period", "2021/03"),
    )
    assert found["reason"].tolist() == ["period: format: expected YYYY-MM, got 2021/03"]


@pytest.mark.parametrize("period", ["2021-13", "2021-00", "21-03", "2021-3"])
def test_period_month_must_exist(make_valid, period: str) -> None:
    found = _reasons(
        contracts.schema_for("utilities", raw=True),
        _break(make_valid, "utilities", "period", period),
    )
    assert found["kind"].tolist() == ["period: format"]


USC = [t for t, spec in TABLES.items() if "usc_code" in spec.column_names]


@pytest.mark.parametrize("table", USC)
def test_bad_uscc_in_every_table(make_valid, table: str) -> None:
    frame = _raw_frame(make_valid(table), table)
    good = frame.loc[1, "usc_code"]
    wrong = next(c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != good[17])
    frame.loc[1, "usc_code"] = good[:17] + wrong
    found = _reasons(contracts.schema_for(table, raw=True), frame)
    assert found["reason"].tolist() == [f"usc_code: check_char: expected {good[17]}, got {wrong}"]
    assert found["kind"].tolist() == ["usc_code: check_char"]


def test_pilot_era_code_passes_the_contract(make_valid) -> None:
    frame = _raw_frame(make_valid("firms"), "firms")
    frame.loc[0, "usc_code"] = sorted(contracts.uscc.PILOT_EXCEPTIONS)[0]
    assert _reasons(contracts.schema_for("firms", raw=True), frame).empty


@pytest.mark.parametrize(("code", "kind"), [("9111", "length"), ("91110000600037341I", "charset")])
def test_uscc_length_and_charset(make_valid, code: str, kind: str) -> None:
    frame = _raw_frame(make_valid("firms"), "firms")
    frame.loc[2, "usc_code"] = code
    found = _reasons(contracts.schema_for("firms", raw=True), frame)
    assert found["kind"].tolist() == [f"usc_code: {kind}"]
    assert found["reason"].iloc[0].endswith(f"got {code}")


REFERENCING = [(t, col) for t, spec in TABLES.items() for col in spec.references]


@pytest.mark.parametrize(("table", "column"), REFERENCING, ids=[f"{t}.{c}" for t, c in REFERENCING])
def test_reference_to_unknown_key(make_valid, table: str, column: str) -> None:
    frame = _raw_frame(make_valid(table), table)
    known = pd.Index(frame[column].iloc[1:], dtype="str")  # row 0's key is unknown
    schema = contracts.schema_for(table, raw=True, references={column: known})
    found = _reasons(schema, frame)
    target = TABLES[table].references[column].split(".")[0].removesuffix("s")
    assert found[["index", "kind"]].values.tolist() == [[0, f"{column}: reference"]]
    assert (
        found["reason"].iloc[0] == f"{column}: reference: unknown {target} {frame[column].iloc[0]}"
    )


@pytest.mark.parametrize("table", list(TABLES))
def test_clean_contract_rejects_duplicate_key(make_valid, table: str) -> None:
    frame = make_valid(table, 4)
    dup = pd.concat([frame, frame.iloc[[2]]], ignore_index=True)
    found = _reasons(contracts.schema_for(table), dup)
    key = ", ".join(TABLES[table].key)
    assert found[["index", "kind", "reason"]].values.tolist() == [
        [4, "duplicate_key", f"duplicate of key ({key})"]
    ]


def test_clean_contract_checks_dtypes(make_valid) -> None:
    frame = make_valid("tax").astype({"tax_year": "float64"})
    with pytest.raises(pa.errors.SchemaError, match="tax_year"):
        contracts.schema_for("tax").validate(frame)


def test_several_problems_in_one_row_all_reported(make_valid) -> None:
    frame = _raw_frame(make_valid("marketplace_stores"), "marketplace_stores")
    frame.loc[3, ["refund_rate", "rating", "account_status"]] = [1.7, 0.0, "closed"]
    found = _reasons(contracts.schema_for("marketplace_stores", raw=True), frame)
    assert set(found["index"]) == {3}
    assert found["kind"].tolist() == [
        "refund_rate: range",
        "rating: range",
        "account_status: allowed",
    ]
    assert "got 1.7" in found["reason"].iloc[0]


def test_unknown_table() -> None:
    with pytest.raises(KeyError, match="table must be one of"):
        contracts.schema_for("nope")


def test_markdown_lists_every_table_and_column() -> None:
    text = contracts.markdown()
    for name, spec in TABLES.items():
        assert f"### `{name}` ({spec.kind})" in text
        for col in spec.columns:
            assert f"| `{col.name}` | {col.dtype} |" in text
    assert "| `refund_rate` | float | no | 0 – 1 |" in text
    assert "YYYY-MM" in text


def test_markdown_entry_point_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "features.contracts"], capture_output=True, text=True, check=True
    )
    assert out.stdout == contracts.markdown()


def test_readme_tables_section_is_current() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:tables -->")[1].split("<!-- /section:tables -->")[0]
    # The generated part starts at the first table heading.
    generated = section[section.index("### `") :].strip()
    assert generated == contracts.markdown().strip(), "rerun: python -m features.contracts"
