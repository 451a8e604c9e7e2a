"""Data contracts of the raw tables as pandera schemas, generated from ``features.tables``.

``schema_for(table)`` is the contract of a clean table: logical dtypes, nullability, bounds,
allowed values, patterns, the USCC check on ``usc_code`` and uniqueness of the key.
``schema_for(table, raw=True, references=...)`` is the variant ingestion validates freshly read
part files with: pandas nullable dtypes (so a missing value in a non-nullable integer or boolean
column is reported row by row), reference checks against known key sets, and no uniqueness
check (ingestion tracks keys across part files itself).

``failure_reasons`` turns pandera's ``failure_cases`` into one human-readable reason per failing
cell, and ``markdown()`` renders every table for the README (``python -m features.contracts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features import uscc
from features.tables import PERIOD_REGEX, TABLES, Column, TableSpec

#: Clean (numpy / pandas) dtype of each logical type; see docs/interfaces.md.
CLEAN_DTYPES: dict[str, str] = {
    "str": "str",
    "category": "str",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "date": "datetime64[ns]",
}
#: Dtypes used while validating raw rows: nullable, so missing values stay row-level failures.
RAW_DTYPES: dict[str, str] = {**CLEAN_DTYPES, "int": "Int64", "bool": "boolean"}
#: Human wording of the patterns that have one.
PATTERN_NAMES: dict[str, str] = {PERIOD_REGEX: "YYYY-MM"}

# Check names (pandera reports them in ``failure_cases``; built-in checks keep pandera's).
USCC_CHECK = "uscc"
REFERENCE_CHECK = "reference"


@lru_cache(maxsize=1 << 20)
def check_uscc(code: str) -> uscc.UsccCheck:
    """Validate one USCC, cached: the same firms recur in every table.

    Parameters
    ----------
    code : str
        Candidate code.

    Returns
    -------
    features.uscc.UsccCheck
        The outcome of ``features.uscc.validate``.
    """
    return uscc.validate(code)


def valid_uscc(series: pd.Series) -> pd.Series:
    """Tell which values of a column of codes are valid USCCs (pilot-era exceptions included).

    Parameters
    ----------
    series : pandas.Series
        Codes, without missing values.

    Returns
    -------
    pandas.Series
        Booleans on the same index; each distinct code is validated once.
    """
    codes, uniques = pd.factorize(series)
    ok = np.fromiter((check_uscc(str(c)).valid for c in uniques), dtype=bool, count=len(uniques))
    return pd.Series(ok[codes], index=series.index)


def uscc_check() -> pa.Check:
    """Return the pandera check that a column holds valid USCCs (GB 32100 and GB 11714).

    Returns
    -------
    pandera.Check
        Vectorised over distinct codes; pilot-era exceptions pass (ingestion counts them as
        warnings).
    """
    return pa.Check(valid_uscc, name=USCC_CHECK)


def reference_check(keys: pd.Index) -> pa.Check:
    """Return a pandera check that every value of a column is one of ``keys``.

    Parameters
    ----------
    keys : pandas.Index
        Known keys of the referenced table (unique; its hash table is built once and reused).

    Returns
    -------
    pandera.Check
        A check named ``reference``.
    """

    def _known(series: pd.Series) -> pd.Series:
        return pd.Series(keys.get_indexer(series) >= 0, index=series.index)

    return pa.Check(_known, name=REFERENCE_CHECK)


def _column_checks(col: Column) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge))
    if col.le is not None:
        checks.append(pa.Check.le(col.le))
    if col.allowed is not None:
        checks.append(pa.Check.isin(list(col.allowed)))
    if col.regex is not None:
        checks.append(pa.Check.str_matches(col.regex))
    if col.name == "usc_code":
        checks.append(uscc_check())
    return checks


def schema_for(
    table: str, *, raw: bool = False, references: Mapping[str, pd.Index] | None = None
) -> pa.DataFrameSchema:
    """Build the pandera schema of a table from its spec in ``features.tables.TABLES``.

    Parameters
    ----------
    table : str
        Table name.
    raw : bool, default False
        False: the contract of a clean table (numpy dtypes, unique key). True: the schema for
        validating raw rows (nullable ``Int64``/``boolean`` dtypes, no uniqueness check).
    references : mapping of str to pandas.Index, optional
        Column -> known keys of the referenced table (e.g. ``{"usc_code": firm_codes}``);
        adds a ``reference`` check on each such column.

    Returns
    -------
    pandera.DataFrameSchema
        Named after the table; extra columns are rejected.

    Raises
    ------
    KeyError
        If ``table`` is not in ``TABLES``.
    """
    if table not in TABLES:
        raise KeyError(f"table must be one of {', '.join(TABLES)}; got {table!r}")
    spec = TABLES[table]
    dtypes = RAW_DTYPES if raw else CLEAN_DTYPES
    references = references or {}
    columns = {}
    for col in spec.columns:
        checks = _column_checks(col)
        if col.name in references:
            checks.append(reference_check(references[col.name]))
        columns[col.name] = pa.Column(
            dtypes[col.dtype],
            checks,
            nullable=col.nullable,
            description=col.description,
            title=col.name,
        )
    return pa.DataFrameSchema(
        columns,
        name=table,
        description=spec.description,
        strict=True,
        ordered=False,
        unique=None if raw else list(spec.key),
        report_duplicates="exclude_first",
    )


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _fmt_value(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return repr(float(value))
    return str(value)


def describe_failure(
    table: str, column: str, check: pa.Check | None, value: object
) -> tuple[str, str]:
    """Explain one failing cell.

    Parameters
    ----------
    table : str
        Table name.
    column : str
        Column name.
    check : pandera.Check or None
        The failing check; None for a missing value in a non-nullable column.
    value : object
        The failing value.

    Returns
    -------
    (str, str)
        The reason kind (``"<column>: <kind>"``, used to count reasons) and the full reason
        (``"<column>: <kind>: expected ..., got ..."``).
    """
    col = next(c for c in TABLES[table].columns if c.name == column)
    got = _fmt_value(value)
    if check is None:
        kind, detail = "null", "expected a value, got null"
    elif check.name == "greater_than_or_equal_to":
        kind, detail = "range", f"expected >= {_fmt_number(col.ge or 0)}, got {got}"
    elif check.name == "less_than_or_equal_to":
        kind, detail = "range", f"expected <= {_fmt_number(col.le or 0)}, got {got}"
    elif check.name == "isin":
        kind, detail = "allowed", f"expected one of {'/'.join(col.allowed or ())}, got {got}"
    elif check.name == "str_matches":
        pattern = PATTERN_NAMES.get(col.regex or "", col.regex)
        kind, detail = "format", f"expected {pattern}, got {got}"
    elif check.name == USCC_CHECK:
        reason = check_uscc(str(value)).reason or "invalid"
        kind, _, detail = reason.partition(": ")
        detail = f"{detail}, got {got}" if kind in ("length", "charset") else detail
    elif check.name == REFERENCE_CHECK:
        target = TABLES[table].references.get(column, "").split(".")[0]
        kind, detail = "reference", f"unknown {target.removesuffix('s') or 'key'} {got}"
    else:  # a check added to the schema by hand
        kind, detail = str(check.name), f"failed {check.name}, got {got}"
    return f"{column}: {kind}", f"{column}: {kind}: {detail}"


def failure_reasons(schema: pa.DataFrameSchema, failure_cases: pd.DataFrame) -> pd.DataFrame:
    """Turn pandera ``failure_cases`` into one reason per failing cell.

    Parameters
    ----------
    schema : pandera.DataFrameSchema
        A schema from ``schema_for`` (its name is the table name).
    failure_cases : pandas.DataFrame
        ``SchemaErrors.failure_cases`` of a lazy validation.

    Returns
    -------
    pandas.DataFrame
        Columns ``index`` (row label), ``column``, ``kind``, ``reason``; in column order.

    Raises
    ------
    ValueError
        If a failure is not about single rows (a wrong dtype or a missing column): such a
        frame cannot be split into good and bad rows.
    """
    table = str(schema.name)
    order = {c.name: i for i, c in enumerate(TABLES[table].columns)}
    whole = failure_cases[failure_cases["index"].isna()]
    if len(whole):
        first = whole.iloc[0]
        raise ValueError(f"column {first['column']}: {first['check']}, got {first['failure_case']}")
    rows = []
    # Loop over failing cells only (a small share of the rows).
    for case in failure_cases.itertuples(index=False):
        column = str(case.column)
        if case.check == "multiple_fields_uniqueness":
            key = ", ".join(schema.unique or [])
            rows.append((case.index, -1, "duplicate_key", f"duplicate of key ({key})"))
            continue
        number = case.check_number
        check = None
        if case.check != "not_nullable" and number is not None and not pd.isna(number):
            check = schema.columns[column].checks[int(number)]
        kind, reason = describe_failure(table, column, check, case.failure_case)
        rows.append((case.index, order.get(column, len(order)), kind, reason))
    out = pd.DataFrame(rows, columns=["index", "order", "kind", "reason"])
    out = out.drop_duplicates(["index", "reason"])
    # An invalid code cannot be a known firm: keep only the more specific USCC reason.
    bad_code = out["kind"].str.startswith("usc_code: ") & ~out["kind"].isin(
        ["usc_code: null", "usc_code: reference"]
    )
    redundant = (out["kind"] == "usc_code: reference") & out["index"].isin(
        out.loc[bad_code, "index"]
    )
    out = out[~redundant]
    return out.sort_values(["index", "order"], kind="stable").drop(columns="order")


def _bounds(col: Column, spec: TableSpec) -> str:
    parts = []
    if col.ge is not None and col.le is not None:
        parts.append(f"{_fmt_number(col.ge)} – {_fmt_number(col.le)}")
    elif col.ge is not None:
        parts.append(f"≥ {_fmt_number(col.ge)}")
    elif col.le is not None:
        parts.append(f"≤ {_fmt_number(col.le)}")
    if col.allowed is not None:
        parts.append(", ".join(f"`{a}`" for a in col.allowed))
    if col.regex is not None:
        parts.append(PATTERN_NAMES.get(col.regex, f"`{col.regex}`".replace("|", "\\|")))
    if col.name == "usc_code":
        parts.append("valid USCC (GB 32100 + GB 11714 checks)")
    if col.name in spec.references:
        when = " when set" if col.nullable else ""
        parts.append(f"exists in {spec.references[col.name]}{when}")
    return "; ".join(parts)


def markdown() -> str:
    """Render every table's contract as Markdown (for the README ``tables`` section).

    Returns
    -------
    str
        One subsection per table: description, key, date column, then a column table
        (name, type, nullable, bounds / allowed values, description).
    """
    lines: list[str] = []
    for spec in TABLES.values():
        lines += [
            f"### `{spec.name}` ({spec.kind})",
            "",
            f"{spec.description}. Key: ({', '.join(f'`{k}`' for k in spec.key)}), unique."
            + (f" Date column: `{spec.date_column}`." if spec.date_column else ""),
            "",
            "| column | type | nullable | bounds / allowed | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for col in spec.columns:
            nullable = "yes" if col.nullable else "no"
            lines.append(
                f"| `{col.name}` | {col.dtype} | {nullable} | {_bounds(col, spec)} "
                f"| {col.description} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Write the Markdown of every contract to standard output."""
    import typer

    typer.echo(markdown(), nl=False)


if __name__ == "__main__":
    main()
