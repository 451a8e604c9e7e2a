"""Snapshot values on a hand-computed firm history, missingness, layout, file and CLI."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pit_world import conform
from typer.testing import CliRunner

from features import io, uscc
from features.feature_availability import SnapshotConfig, month_end, month_index_of
from features.snapshot import (
    ID_COLUMNS,
    SnapshotError,
    build_snapshot,
    build_snapshot_file,
    default_catalog,
    load_clean,
)
from kuaxin.cli import app

T = date(2021, 6, 20)
X, Y, Z = uscc.generate(np.random.default_rng(8), 3)


def _firm(code: str, registered: str) -> dict:
    return {
        "usc_code": code,
        "name": f"firm {code[-4:]}",
        "district": "baoan",
        "industry": "eyewear",
        "registration_date": pd.Timestamp(registered),
        "registered_capital_cny": 2e6,
        "customs_modes": "9610,9710",
        "main_marketplace": None,
        "own_brand": True,
        "independent_site": False,
        "high_tech": False,
        "provincial_leader": False,
        "deregistration_date": pd.NaT,
    }


def _months(first: str, last: str) -> list[str]:
    return [str(p) for p in pd.period_range(first, last, freq="M")]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    firms = [_firm(X, "2018-01-01"), _firm(Y, "2019-03-01"), _firm(Z, "2021-06-20")]
    customs = []
    for p in _months("2019-05", "2021-05"):
        value = 99999.0 if p == "2021-05" else (1000.0 if p >= "2020-05" else 500.0)
        for dest, mode in (("USA", "9610"), ("RUS", "9710")):
            customs.append(
                {
                    "usc_code": X,
                    "period": p,
                    "customs_mode": mode,
                    "destination_iso3": dest,
                    "declared_value_usd": value / 2,
                    "declaration_count": 1,
                    "returned_value_usd": 0.0,
                    "inspection_anomalies": 0,
                }
            )
    fx = [
        {
            "usc_code": X,
            "period": p,
            "channel": "bank",
            "received_usd": 900.0,
            "fx_class": "B" if p == "2021-05" else "A",
        }
        for p in _months("2020-05", "2021-05")
    ]
    tax = [
        {
            "usc_code": X,
            "tax_year": 2019,
            "tax_grade": "B",
            "tax_paid_cny": 100.0,
            "export_rebate_cny": 10.0,
            "rebate_class": 2,
            "arrears_cny": 0.0,
        },
        {
            "usc_code": X,
            "tax_year": 2020,
            "tax_grade": "A",
            "tax_paid_cny": 150.0,
            "export_rebate_cny": 20.0,
            "rebate_class": 1,
            "arrears_cny": 0.0,
        },
    ]
    court = [
        {
            "case_id": "c1",
            "usc_code": X,
            "record_type": "judgment",
            "amount_cny": 1e5,
            "open_date": pd.Timestamp("2019-01-01"),
            "close_date": pd.Timestamp("2019-06-01"),
        },
        {
            "case_id": "c2",
            "usc_code": X,
            "record_type": "enforcement",
            "amount_cny": 3e5,
            "open_date": pd.Timestamp("2021-06-10"),
            "close_date": pd.NaT,
        },
        {
            "case_id": "c3",
            "usc_code": X,
            "record_type": "dishonest_debtor",
            "amount_cny": 3e5,
            "open_date": pd.Timestamp("2021-06-15"),
            "close_date": pd.NaT,
        },
    ]
    policies = [
        {
            "policy_id": "p1",
            "usc_code": X,
            "insurer": "sinosure",
            "start_date": pd.Timestamp("2020-03-01"),
            "end_date": pd.Timestamp("2021-03-01"),
            "insured_turnover_usd": 1000.0,
            "buyer_limit_usd": 100.0,
            "claims_paid_usd": 50.0,
        },
        {
            "policy_id": "p2",
            "usc_code": X,
            "insurer": "sinosure",
            "start_date": pd.Timestamp("2021-03-01"),
            "end_date": pd.Timestamp("2022-03-01"),
            "insured_turnover_usd": 2000.0,
            "buyer_limit_usd": 300.0,
            "claims_paid_usd": 999.0,
        },
    ]
    return {
        "firms": conform("firms", pd.DataFrame(firms)),
        "customs_declarations": conform("customs_declarations", pd.DataFrame(customs)),
        "fx_receipts": conform("fx_receipts", pd.DataFrame(fx)),
        "tax": conform("tax", pd.DataFrame(tax)),
        "court_records": conform("court_records", pd.DataFrame(court)),
        "insurance_policies": conform("insurance_policies", pd.DataFrame(policies)),
    }


@pytest.fixture(scope="module")
def snap(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return build_snapshot(tables, T).set_index("usc_code")


def test_last_visible_month_follows_the_lags() -> None:
    cfg = SnapshotConfig.load()
    # customs: 45 days → 2021-05-06, inside May, so April is the last complete visible month
    assert cfg.last_month("customs_declarations", T) == month_index_of(date(2021, 4, 1))
    assert cfg.last_month("fx_receipts", T) == month_index_of(date(2021, 5, 1))
    # utilities: 20 days → 2021-05-31, a month end: May is visible
    assert cfg.last_month("utilities", T) == month_index_of(date(2021, 5, 1))
    assert month_end(month_index_of(date(2024, 2, 10))) == date(2024, 2, 29)
    assert cfg.last_tax_year(date(2021, 4, 14)) == 2019
    assert cfg.last_tax_year(date(2021, 4, 15)) == 2020


def test_live_firms_only(snap: pd.DataFrame) -> None:
    assert set(snap.index) == {X, Y}  # Z registers on T itself


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("exports_3m_usd", 3000.0),
        ("exports_6m_usd", 6000.0),
        ("exports_12m_usd", 12000.0),  # May's 99,999 is not published yet
        ("export_growth_12m", 1.0),  # 12,000 vs 6,000
        ("export_trend_yoy_3m", 1.0),  # Feb-Apr 2021 vs Feb-Apr 2020
        ("export_volatility_12m", 0.0),
        ("export_months_active_12m", 12.0),
        ("months_since_last_export", 0.0),
        ("destination_count_12m", 2.0),
        ("destination_hhi_12m", 0.5),
        ("high_risk_destination_share", 0.5),  # Russia is OECD category 7
        ("destination_risk_avg_12m", 3.5),
        ("share_9610_12m", 0.5),
        ("share_0110_12m", 0.0),
        ("fx_received_12m_usd", 10800.0),  # Jun 2020 - May 2021 (FX lag 15 days)
        ("fx_receipt_ratio_12m", 0.9),  # May 2020 - Apr 2021 in both sources
        ("fx_receipt_ratio_3m", 0.9),
        ("fx_receipt_ratio_trend", 0.0),
        ("tax_grade_change", 1.0),  # B (3) → A (4), tax year 2020 published 2021-04-15
        ("tax_paid_cny", 150.0),
        ("tax_paid_growth", 0.5),
        ("rebate_class", 1.0),
        ("tax_years_on_record", 2.0),
        ("enforcement_open", 1.0),
        ("enforcement_amount_open_cny", 3e5),
        ("dishonest_listed", 0.0),  # listed 2021-06-15, published 2021-06-22
        ("court_records_total", 2.0),
        ("judgments_24m", 0.0),
        ("months_since_court_record", 0.0),
        ("insured", 1.0),
        ("insured_turnover_usd", 2000.0),
        ("buyer_limit_usd", 300.0),
        ("insurance_years", 2.0),
        ("claims_paid_24m_usd", 50.0),  # the open policy's 999 is not settled yet
        ("claims_ratio", 0.05),
        ("customs_mode_count", 2.0),
        ("uses_9710", 1.0),
        ("own_brand", 1.0),
    ],
)
def test_hand_computed_values(snap: pd.DataFrame, feature: str, expected: float) -> None:
    assert snap.loc[X, feature] == pytest.approx(expected, abs=1e-12)


def test_categories_and_age(snap: pd.DataFrame) -> None:
    assert snap.loc[X, "tax_grade"] == "A"
    assert snap.loc[X, "fx_class"] == "B"
    assert pd.isna(snap.loc[X, "customs_credit"]) and pd.isna(snap.loc[X, "main_marketplace"])
    assert snap.loc[X, "industry"] == "eyewear"
    age = (pd.Timestamp(T) - pd.Timestamp("2018-01-01")).days / 30.4375
    assert snap.loc[X, "firm_age_months"] == pytest.approx(age)


def test_missing_source_is_nan_but_absent_records_are_zero(snap: pd.DataFrame) -> None:
    for feature in (
        "exports_12m_usd",
        "fx_receipt_ratio_12m",
        "headcount",
        "gmv_6m_usd",
        "overseas_stock_usd",
        "loans_outstanding_cny",
        "max_dpd_12m",
        "tax_paid_cny",
        "electricity_kwh_3m",
    ):
        assert np.isnan(snap.loc[Y, feature]), feature
    assert pd.isna(snap.loc[Y, "tax_grade"])
    for feature in (
        "enforcement_open",
        "dishonest_listed",
        "penalties_24m",
        "insured",
        "insured_turnover_usd",
        "court_records_total",
    ):
        assert snap.loc[Y, feature] == 0.0, feature
    assert snap.loc[Y, "months_since_court_record"] == 120.0
    assert np.isnan(snap.loc[Y, "claims_ratio"])
    # X has customs data but no stores: marketplace features missing, not zero
    assert np.isnan(snap.loc[X, "gmv_3m_usd"]) and np.isnan(snap.loc[X, "stock_cover_days"])


def test_layout_and_dtypes(tables: dict[str, pd.DataFrame]) -> None:
    cat = default_catalog()
    out = build_snapshot(tables, T)
    assert list(out.columns) == ID_COLUMNS + cat.names
    assert out["usc_code"].is_monotonic_increasing
    assert (out["as_of"] == pd.Timestamp(T)).all() and out["as_of"].dtype == "datetime64[ns]"
    assert all(out[c].dtype == np.float64 for c in cat.numeric)
    for c in cat.categorical:
        assert list(out[c].cat.categories) == cat[c].categories


def test_catalog_feature_the_builder_lacks_is_refused(tables: dict[str, pd.DataFrame]) -> None:
    from features.catalog import catalog_from_dict

    entry = default_catalog()["exports_12m_usd"].model_dump() | {"name": "moon_phase"}
    with pytest.raises(SnapshotError, match="moon_phase"):
        build_snapshot(tables, T, catalog=catalog_from_dict({"features": [entry]}))


def test_file_cli_and_round_trip(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    for name, df in tables.items():
        io.write_table(df, clean, name)
    direct = build_snapshot(load_clean(clean), T)
    path = build_snapshot_file(clean, T, tmp_path / "a" / "snap.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), direct, check_exact=True)
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["features", str(clean), "--as-of", str(T), "--out", str(out)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), direct, check_exact=True)
    bad = CliRunner().invoke(app, ["features", str(clean), "--as-of", "21-06-2021"])
    assert bad.exit_code != 0 and "--as-of" in bad.output
    with pytest.raises(FileNotFoundError, match="firms"):
        load_clean(tmp_path / "nothing")


def test_shared_snapshot(snapshot: pd.DataFrame, clean_tables: dict[str, pd.DataFrame]) -> None:
    firms = clean_tables["firms"]
    as_of = snapshot["as_of"].iloc[0]
    live = firms[(firms["registration_date"] < as_of) & ~(firms["deregistration_date"] < as_of)]
    assert set(snapshot["usc_code"]) == set(live["usc_code"])
    assert not snapshot["usc_code"].duplicated().any()
    # most firms export, and the sunshine ratio is around one for most of them
    assert snapshot["exports_12m_usd"].notna().mean() > 0.8
    assert 0.5 < snapshot["fx_receipt_ratio_12m"].median() < 1.5


def test_cli_refuses_folder_without_tables(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["features", str(tmp_path), "--as-of", "2024-01-01", "--out", str(tmp_path / "s.parquet")],
    )
    assert result.exit_code != 0
    assert "firms" in result.output and "Traceback" not in result.output
