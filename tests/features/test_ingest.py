"""Ingestion: every fault quarantined with its reason, nothing else; counts reconcile; clean
tables typed per spec; unusable files fail with one line naming file and column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contracts, io, uscc
from features.ingest import ORDER, UnusableTableError, ingest
from features.tables import TABLES

N = 6


def _wrong_check(code: str) -> str:
    return code[:17] + next(c for c in uscc.ALPHABET if c != code[17])


@pytest.fixture(scope="module")
def faulty_world(tmp_path_factory, make_valid, firm_codes):
    """A raw world with one fault of each kind, ingested once for the tests that read it.

    Returns (raw dir, expected quarantine, clean dir, report); expected quarantine maps
    table -> {(source part, row): set of reason kinds}.
    """
    t = {name: make_valid(name, N) for name in TABLES}
    expected: dict[str, dict[tuple[int, int], set[str]]] = {name: {} for name in TABLES}

    # firms: a firm with a corrupted code (row N) and a pilot-era firm (row N + 1, accepted).
    extra = make_valid("firms", N + 2).iloc[N:].copy()
    extra.iloc[0, 0] = _wrong_check(firm_codes[N])
    extra.iloc[1, 0] = sorted(uscc.PILOT_EXCEPTIONS)[0]
    t["firms"] = pd.concat([t["firms"], extra], ignore_index=True)
    expected["firms"][(0, N)] = {"usc_code: check_char"}
    # ... and a missing boolean (the firm still exists for the other tables' references).
    t["firms"]["own_brand"] = t["firms"]["own_brand"].astype(object)
    t["firms"].loc[1, "own_brand"] = None
    expected["firms"][(0, 1)] = {"own_brand: null"}

    # tax: a valid code that is not a registered firm.
    t["tax"].loc[2, "usc_code"] = firm_codes[N + 5]
    expected["tax"][(0, 2)] = {"usc_code: reference"}
    # ... and a missing year in an integer column (pandas writes it as float64).
    t["tax"]["tax_year"] = t["tax"]["tax_year"].astype("float64")
    t["tax"].loc[4, "tax_year"] = np.nan
    expected["tax"][(0, 4)] = {"tax_year: null"}

    # marketplace_stores: refund rate out of range.
    t["marketplace_stores"].loc[1, "refund_rate"] = 1.7
    expected["marketplace_stores"][(0, 1)] = {"refund_rate: range"}

    # utilities: bad period format.
    t["utilities"].loc[3, "period"] = "2021/03"
    expected["utilities"][(0, 3)] = {"period: format"}

    # social_insurance: an exact copy of row 2 appended; a fractional headcount in row 4.
    si = pd.concat([t["social_insurance"], t["social_insurance"].iloc[[2]]], ignore_index=True)
    si["insured_headcount"] = si["insured_headcount"].astype("float64")
    si.loc[4, "insured_headcount"] = 12.5
    t["social_insurance"] = si
    expected["social_insurance"][(0, N)] = {"duplicate"}
    expected["social_insurance"][(0, 4)] = {"insured_headcount: type"}

    # customs_declarations: same key as row 0, other content.
    cd = t["customs_declarations"]
    t["customs_declarations"] = pd.concat(
        [cd, cd.iloc[[0]].assign(declared_value_usd=123.0)], ignore_index=True
    )
    expected["customs_declarations"][(0, N)] = {"duplicate_key"}

    # customs_credit: dates arrive as ISO strings; one does not exist.
    cc = t["customs_credit"]
    cc["effective_date"] = cc["effective_date"].dt.strftime("%Y-%m-%d").astype(object)
    cc.loc[1, "effective_date"] = "2021-02-30"
    expected["customs_credit"][(0, 1)] = {"effective_date: type"}

    # fx_receipts: a class that does not exist.
    t["fx_receipts"].loc[5, "fx_class"] = "Z"
    expected["fx_receipts"][(0, 5)] = {"fx_class: allowed"}

    # overseas_warehouses: two parts; part 1 repeats part 0's row 1 exactly.
    ow = t["overseas_warehouses"]
    t["overseas_warehouses"] = [ow.iloc[:4], pd.concat([ow.iloc[4:], ow.iloc[[1]]])]
    expected["overseas_warehouses"][(1, 2)] = {"duplicate"}

    # loan_repayments: a loan that does not exist.
    t["loan_repayments"].loc[0, "loan_id"] = "L99999"
    expected["loan_repayments"][(0, 0)] = {"loan_id: reference"}

    # court_records: a missing amount.
    t["court_records"].loc[2, "amount_cny"] = np.nan
    expected["court_records"][(0, 2)] = {"amount_cny: null"}

    # admin_penalties: a negative fine.
    t["admin_penalties"].loc[4, "amount_cny"] = -50.0
    expected["admin_penalties"][(0, 4)] = {"amount_cny: range"}

    # insurance_policies: two problems in one row.
    t["insurance_policies"].loc[3, ["buyer_limit_usd", "claims_paid_usd"]] = [-1.0, -2.0]
    expected["insurance_policies"][(0, 3)] = {"buyer_limit_usd: range", "claims_paid_usd: range"}

    # loans and everything else stay clean; every table's rows reference firms 0..N-1.
    root = tmp_path_factory.mktemp("faulty")
    for name, frames in t.items():
        for part, frame in enumerate(frames if isinstance(frames, list) else [frames]):
            io.write_table(frame, root / "raw", name, part)
    report = ingest(root / "raw", root / "clean", progress=False)
    return root / "raw", expected, root / "clean", report


def _quarantine(out: Path, table: str) -> pd.DataFrame:
    if not io.part_files(out / "quarantine", table):
        return pd.DataFrame(columns=["_reason", "_source", "_row"])
    return io.read_table(out / "quarantine", table)


def _kinds(reason: str) -> set[str]:
    kinds = set()
    for part in reason.split("; "):
        if part == "duplicate":
            kinds.add("duplicate")
        elif part.startswith("duplicate of key"):
            kinds.add("duplicate_key")
        else:
            column, kind, _ = part.split(": ", 2)
            kinds.add(f"{column}: {kind}")
    return kinds


def test_each_fault_quarantined_with_its_reason_and_nothing_else(faulty_world) -> None:
    _, expected, out, report = faulty_world
    for table in TABLES:
        q = _quarantine(out, table)
        got = {
            (int(src.split("part-")[1][:5]), int(row)): _kinds(reason)
            for src, row, reason in zip(q["_source"], q["_row"], q["_reason"], strict=True)
        }
        assert got == expected[table], table
        entry = report[table]
        assert entry["quarantined"] == len(expected[table])
        assert entry["read"] == entry["accepted"] + entry["quarantined"]
        assert sum(entry["by_reason"].values()) == sum(len(k) for k in expected[table].values())
    assert report["firms"]["warnings"] == {
        "usc_code: pilot-era code accepted without check character": 1
    }
    assert report["totals"]["read"] == sum(report[t]["read"] for t in TABLES)
    assert report["totals"]["quarantined"] == sum(len(e) for e in expected.values())
    assert json.loads((out / "ingest_report.json").read_text()) == report


def test_reasons_are_readable(faulty_world) -> None:
    out = faulty_world[2]
    reasons = {t: _quarantine(out, t)["_reason"].tolist() for t in TABLES}
    assert reasons["marketplace_stores"] == ["refund_rate: range: expected <= 1, got 1.7"]
    assert reasons["utilities"] == ["period: format: expected YYYY-MM, got 2021/03"]
    assert reasons["customs_declarations"] == [
        "duplicate of key (usc_code, period, customs_mode, destination_iso3)"
    ]
    assert reasons["insurance_policies"] == [
        "buyer_limit_usd: range: expected >= 0, got -1.0; "
        "claims_paid_usd: range: expected >= 0, got -2.0"
    ]
    assert reasons["customs_credit"] == [
        "effective_date: type: expected a date YYYY-MM-DD, got 2021-02-30"
    ]
    assert reasons["firms"][1].startswith("usc_code: check_char: expected ")
    assert reasons["tax"][0].startswith("usc_code: reference: unknown firm ")


def test_quarantine_rows_point_at_their_source_rows(faulty_world) -> None:
    raw, _, out, _ = faulty_world
    for table in TABLES:
        q = _quarantine(out, table)
        for record in q.to_dict("records"):
            source = pd.read_parquet(raw / record["_source"])
            original = source.iloc[record["_row"]]
            for col in TABLES[table].column_names:
                a, b = original[col], record[col]
                assert (pd.isna(a) and pd.isna(b)) or a == b, (table, col)


def test_small_batches_give_the_same_result(faulty_world, tmp_path) -> None:
    # Part files read in batches of 2 rows: same quarantine (rows counted from the file's
    # start), same clean rows, duplicates still found across batches.
    raw, _, out, report = faulty_world
    small = tmp_path / "small"
    report_small = ingest(raw, small, progress=False, batch_rows=2)
    for table in TABLES:
        for key in ("read", "accepted", "quarantined", "by_reason"):
            assert report_small[table][key] == report[table][key], (table, key)
        cols = ["_source", "_row", "_reason"]
        a = _quarantine(out, table)[cols].sort_values(cols).reset_index(drop=True)
        b = _quarantine(small, table)[cols].sort_values(cols).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
        pd.testing.assert_frame_equal(io.read_table(out, table), io.read_table(small, table))
    assert len(io.part_files(small, "firms")) > 1


def test_clean_tables_follow_the_spec(faulty_world) -> None:
    _, _, out, report = faulty_world
    for table, spec in TABLES.items():
        clean = io.read_table(out, table)
        assert list(clean.columns) == spec.column_names
        assert len(clean) == report[table]["accepted"]
        for col in spec.columns:
            assert str(clean[col.name].dtype) == contracts.CLEAN_DTYPES[col.dtype], (table, col)
        contracts.schema_for(table).validate(clean)  # the clean contract, key uniqueness included
    # The duplicated overseas-warehouse row is kept once.
    assert report["overseas_warehouses"]["accepted"] == N


def test_dates_keep_the_date_part_only(raw_world, make_valid, tmp_path) -> None:
    firms = make_valid("firms", N)
    firms["deregistration_date"] = pd.NaT
    firms.loc[2, "deregistration_date"] = pd.Timestamp("2023-05-06 13:45")
    out = tmp_path / "clean"
    report = ingest(raw_world({"firms": firms}, n=N), out, progress=False)
    assert report["firms"]["warnings"] == {"deregistration_date: time of day dropped": 1}
    clean = io.read_table(out, "firms")
    assert clean["deregistration_date"].isna().sum() == N - 1
    assert clean.loc[2, "deregistration_date"] == pd.Timestamp("2023-05-06")


def test_absent_optional_table_is_reported_not_an_error(raw_world, tmp_path) -> None:
    raw = raw_world({"utilities": None, "loans": None}, n=N)
    report = ingest(raw, tmp_path / "clean", progress=False)
    assert report["utilities"]["status"] == "absent"
    assert report["utilities"]["read"] == 0
    assert report["firms"]["status"] == "ok"
    # Without loans, repayments cannot be checked against them: said, not silently passed.
    assert any("not checked against loans" in w for w in report["loan_repayments"]["warnings"])
    assert report["totals"]["quarantined"] == 0


def test_firms_are_required(raw_world, tmp_path) -> None:
    raw = raw_world({"firms": None}, n=N)
    with pytest.raises(UnusableTableError, match="table firms is required"):
        ingest(raw, tmp_path / "clean", progress=False)


def test_rows_of_a_quarantined_firm_still_reference_it(raw_world, make_valid, tmp_path) -> None:
    # The firm exists even though its record has a fault: its other rows are accepted.
    firms = make_valid("firms", N)
    firms.loc[0, "registered_capital_cny"] = -1.0
    report = ingest(raw_world({"firms": firms}, n=N), tmp_path / "clean", progress=False)
    assert report["firms"]["by_reason"] == {"registered_capital_cny: range": 1}
    assert report["totals"]["quarantined"] == 1


def test_rerun_replaces_earlier_output(raw_world, make_valid, tmp_path) -> None:
    out = tmp_path / "clean"
    stores = make_valid("marketplace_stores", N)
    ingest(
        raw_world({"marketplace_stores": [stores.iloc[:3], stores.iloc[3:]]}, n=N),
        out,
        progress=False,
    )
    assert len(io.part_files(out, "marketplace_stores")) == 2
    stores.loc[0, "orders"] = -1
    ingest(raw_world({"marketplace_stores": stores}, n=N, name="raw2"), out, progress=False)
    assert len(io.part_files(out, "marketplace_stores")) == 1
    assert len(io.read_table(out, "marketplace_stores")) == N - 1


def _cli(raw: Path, out: Path):
    from kuaxin.cli import app

    return CliRunner().invoke(app, ["ingest", str(raw), "--out", str(out)])


def test_rerun_without_a_table_removes_its_old_output(raw_world, tmp_path) -> None:
    out = tmp_path / "clean"
    ingest(raw_world(n=N), out, progress=False)
    assert io.part_files(out, "utilities")
    report = ingest(raw_world({"utilities": None}, n=N, name="raw2"), out, progress=False)
    assert report["utilities"]["status"] == "absent"
    assert not io.part_files(out, "utilities")


def test_empty_part_and_all_null_column(raw_world, make_valid, tmp_path) -> None:
    firms = make_valid("firms", N).assign(main_marketplace=None)  # an Arrow null column
    stores = make_valid("marketplace_stores", N)
    out = tmp_path / "clean"
    report = ingest(
        raw_world({"firms": firms, "marketplace_stores": [stores.iloc[:0], stores]}, n=N),
        out,
        progress=False,
    )
    assert report["totals"]["quarantined"] == 0
    assert report["marketplace_stores"]["files"] == 2
    clean = io.read_table(out, "firms")
    assert clean["main_marketplace"].isna().all()
    assert str(clean["main_marketplace"].dtype) == "str"
    assert len(io.read_table(out, "marketplace_stores")) == N


def test_cli_prints_totals(raw_world, tmp_path) -> None:
    result = _cli(raw_world(n=N), tmp_path / "clean")
    assert result.exit_code == 0, result.output
    n_rows = N * len(TABLES)
    assert f"read {n_rows:,} rows: accepted {n_rows:,}, quarantined 0" in result.output


@pytest.mark.parametrize(
    ("table", "mutate", "message"),
    [
        (
            "marketplace_stores",
            lambda df: df.drop(columns="refund_rate"),
            "column refund_rate: expected floating point, got missing",
        ),
        (
            "marketplace_stores",
            lambda df: df.astype({"refund_rate": "str"}),
            "column refund_rate: expected floating point, got large_string",
        ),
        (
            "tax",
            lambda df: df.astype({"tax_year": "str"}),
            "column tax_year: expected integer, got",
        ),
        (
            "firms",
            lambda df: df.astype({"own_brand": "int64"}),
            "column own_brand: expected boolean",
        ),
        (
            "loans",
            lambda df: df.assign(start_date=np.arange(len(df))),
            "column start_date: expected timestamp, got int64",
        ),
    ],
)
def test_cli_unusable_file_fails_with_one_line(
    raw_world, make_valid, tmp_path, table, mutate, message
) -> None:
    raw = raw_world({table: mutate(make_valid(table, N))}, n=N)
    out = tmp_path / "clean"
    result = _cli(raw, out)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {raw / table / 'part-00000.parquet'}: ")
    assert message in lines[0]
    assert not (out / "ingest_report.json").exists()  # nothing written


def test_cli_unreadable_parquet(raw_world, tmp_path) -> None:
    raw = raw_world(n=N)
    bad = raw / "utilities" / "part-00001.parquet"
    bad.write_bytes(b"not parquet at all")
    result = _cli(raw, tmp_path / "clean")
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1
    assert f"{bad}: not a readable Parquet file" in result.output


def test_cli_corrupt_data_pages(raw_world, tmp_path) -> None:
    # The footer reads (the pre-flight passes) but the data pages do not.
    raw = raw_world(n=N)
    out = tmp_path / "clean"
    assert _cli(raw, out).exit_code == 0
    bad = raw / "utilities" / "part-00000.parquet"
    data = bytearray(bad.read_bytes())
    data[8:200] = b"\xab" * 192
    bad.write_bytes(bytes(data))
    result = _cli(raw, out)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {bad}: not a readable Parquet file (")
    assert not (out / "ingest_report.json").exists()  # the earlier run's report is gone


def test_order_puts_references_first() -> None:
    assert ORDER[0] == "firms"
    assert ORDER.index("loans") < ORDER.index("loan_repayments")
    assert ORDER.index("buyers") < ORDER.index("customs_declarations")
    assert ORDER.index("insurance_policies") < ORDER.index("insurance_claims")
    assert sorted(ORDER) == sorted(TABLES)


# --- The shared simulated world (tests/conftest.py: fault_rate 0.01, oracle of faults) ---

#: Reason kinds that count as catching each injected fault kind (``column`` = faulty column).
FAULT_KINDS = {
    "uscc_check": lambda col: {"usc_code: check_char", "usc_code: org_check_char"},
    "uscc_length": lambda col: {"usc_code: length"},
    "unknown_firm": lambda col: {"usc_code: reference"},
    "negative_amount": lambda col: {f"{col}: range"},
    "out_of_range": lambda col: {f"{col}: range", f"{col}: allowed"},
    "bad_period": lambda col: {"period: format"},
    "duplicate": lambda col: {"duplicate"},
    "late_arrival": lambda col: {"received_date: late"},
}


@pytest.fixture(scope="module")
def world_quarantine(clean_dir: Path) -> pd.DataFrame:
    frames = [
        io.read_table(clean_dir / "quarantine", t)[["_source", "_row", "_reason"]].assign(table=t)
        for t in TABLES
        if io.part_files(clean_dir / "quarantine", t)
    ]
    return pd.concat(frames, ignore_index=True)


def test_world_every_fault_quarantined_with_its_kind(sim_dirs, world_quarantine) -> None:
    truth = io.read_table(sim_dirs[1], "faults")
    assert len(truth) > 100  # the shared world really carries faults
    merged = truth.merge(
        world_quarantine,
        left_on=["table", "file", "_row"],
        right_on=["table", "_source", "_row"],
        how="left",
    )
    missed = merged[merged["_reason"].isna()]
    assert missed.empty, missed.head()
    cols = ["table", "fault", "column", "_reason"]
    wrong = [
        (table, fault, reason)
        for table, fault, column, reason in merged[cols].itertuples(index=False, name=None)
        if not FAULT_KINDS[fault](column) & _kinds(reason)
    ]
    assert wrong == []


def test_world_nothing_else_quarantined(sim_dirs, world_quarantine) -> None:
    truth = io.read_table(sim_dirs[1], "faults")
    merged = world_quarantine.merge(
        truth,
        left_on=["table", "_source", "_row"],
        right_on=["table", "file", "_row"],
        how="left",
    )
    extra = merged[merged["fault"].isna()]
    assert extra.empty, extra.head()


def test_world_counts_reconcile(sim_dirs, clean_dir) -> None:
    report = json.loads((clean_dir / "ingest_report.json").read_text())
    truth = io.read_table(sim_dirs[1], "faults")
    for table in TABLES:
        entry = report[table]
        raw_rows = sum(
            pq.ParquetFile(f).metadata.num_rows for f in io.part_files(sim_dirs[0], table)
        )
        assert entry["read"] == raw_rows == entry["accepted"] + entry["quarantined"], table
        assert entry["quarantined"] == int((truth["table"] == table).sum()), table
        clean_rows = sum(
            pq.ParquetFile(f).metadata.num_rows for f in io.part_files(clean_dir, table)
        )
        assert clean_rows == entry["accepted"], table
    totals = report["totals"]
    assert totals["read"] == totals["accepted"] + totals["quarantined"]


def test_world_clean_tables_satisfy_contracts(clean_dir) -> None:
    for table in TABLES:
        contracts.schema_for(table).validate(io.read_table(clean_dir, table), lazy=True)


def test_to_logical_conversions() -> None:
    from features.ingest import to_logical

    spec = TABLES["customs_credit"]
    raw = pd.DataFrame(
        {
            "usc_code": ["a", "b", "c", "d"],
            "effective_date": [
                "2021-03-05T20:00:00+00:00",  # 04:00 next day in Shenzhen
                "2021-03-05T10:00:00+01:00",
                "2021-13-01",
                None,
            ],
            "category": ["aeo"] * 4,
        }
    )
    logical, problems, warnings = to_logical(raw, spec)
    dates = logical["effective_date"]
    assert str(dates.dtype) == "datetime64[ns]"
    assert dates.iloc[0] == pd.Timestamp("2021-03-06")
    assert dates.iloc[1] == pd.Timestamp("2021-03-05")
    assert dates.iloc[2:].isna().all()
    assert problems[["index", "kind"]].values.tolist() == [[2, "effective_date: type"]]
    assert warnings == {"effective_date: time of day dropped": 2}

    tax = TABLES["tax"]
    raw = pd.DataFrame({c: [None] * 4 for c in tax.column_names})
    raw["tax_year"] = [2020.0, 2020.5, 1e30, np.nan]
    logical, problems, _ = to_logical(raw, tax)
    assert logical["tax_year"].iloc[0] == 2020
    assert logical["tax_year"].iloc[1:].isna().all()
    assert problems["index"].tolist() == [1, 2]
    assert problems["reason"].iloc[0] == "tax_year: type: expected an integer, got 2020.5"


def test_late_row_and_unknown_buyer_are_quarantined(raw_world, make_valid, tmp_path) -> None:
    from features.feature_availability import SnapshotConfig

    fx = make_valid("fx_receipts", N)
    lag = SnapshotConfig.load().lag("fx_receipts")
    due = pd.Timestamp(fx.loc[1, "period"] + "-01") + pd.offsets.MonthEnd(0)
    fx.loc[1, "received_date"] = due + pd.Timedelta(days=lag + 1)  # one day late
    fx.loc[2, "received_date"] = due + pd.Timedelta(days=lag)  # just in time: kept
    fx.loc[3, "buyer_id"] = "BYUSA999999"  # no such buyer
    fx.loc[4, "buyer_id"] = None  # a marketplace payout: no buyer, not checked
    report = ingest(raw_world({"fx_receipts": fx}, n=N), tmp_path / "clean", progress=False)
    q = io.read_table(tmp_path / "clean" / "quarantine", "fx_receipts")
    assert q["_row"].tolist() == [1, 3]
    assert q["_reason"].iloc[0].startswith("received_date: late: expected on or before")
    assert q["_reason"].iloc[1] == "buyer_id: reference: unknown buyer BYUSA999999"
    assert report["fx_receipts"]["by_reason"] == {
        "received_date: late": 1,
        "buyer_id: reference": 1,
    }
