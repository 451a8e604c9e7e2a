"""Point-in-time correctness: nothing dated or published after T changes the snapshot at T,
and every record becomes visible exactly on the day its lag has passed."""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pit_world import conform, make_world

from features import uscc
from features.catalog import load_catalog
from features.feature_availability import SnapshotConfig, availability_dates
from features.snapshot import build_snapshot
from features.tables import TABLES

#: Early in a month and before the April tax publication, so every source has rows dated
#: before T whose lag has not passed (last month's data, last year's tax grade).
T = date(2022, 3, 5)
CONFIG = SnapshotConfig.load()
CATALOG = load_catalog()
TS = pd.Timestamp(T)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return make_world(30, seed=5)


def _known_at(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` as the platform knew them at T."""
    if name == "firms":
        known = df[df["registration_date"] < TS].copy()
        known.loc[known["deregistration_date"] >= TS, "deregistration_date"] = pd.NaT
        return known.reset_index(drop=True)
    known = df[(availability_dates(name, df, CONFIG) <= TS).to_numpy()].copy()
    if name == "court_records":  # a closure is known only after its own lag
        late = known["close_date"] + pd.Timedelta(days=CONFIG.lag(name, "close_lag_days")) > TS
        known.loc[late, "close_date"] = pd.NaT
    if name == "insurance_policies":  # claims are known only once the policy year settled
        unsettled = known["end_date"] + pd.Timedelta(days=CONFIG.lag(name, "claims_lag_days")) > TS
        known.loc[unsettled, "claims_paid_usd"] = 0.0
    if name == "insurance_claims":  # a decision is known only after its own lag
        lag = pd.Timedelta(days=CONFIG.lag(name, "decision_lag_days"))
        pending = ~(known["decision_date"] + lag <= TS)
        known.loc[pending, ["decision_date", "paid_usd", "status"]] = [pd.NaT, 0.0, "pending"]
    return known.reset_index(drop=True)


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=True)
    assert _parquet(a) == _parquet(b)


def _late_rows(name: str, world: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows for existing firms dated after T, and dated on/before T but published after it."""
    firms = world["firms"]["usc_code"].tolist()[:6]
    spec = TABLES[name]
    template = world[name].iloc[[0]]
    rows = []
    for i, code in enumerate(firms):
        row = template.copy()
        if spec.firm_keyed:
            row["usc_code"] = code
        for col in spec.key:
            if col.endswith("_id"):
                row[col] = f"LATE-{name}-{i}"
        if name == "firms":
            row["usc_code"] = uscc.generate(np.random.default_rng(100 + i), 1)[0]
            row["registration_date"] = TS + pd.Timedelta(days=i)  # on or after T
        elif name == "tax":
            # tax year 2021 ended before T but is published only on 2022-04-15
            row["tax_year"] = 2021 + i % 2
        elif spec.kind == "monthly":
            # the month of T (not over), the month before (over, lag not passed), later
            row["period"] = ["2022-03", "2022-02", "2023-01"][i % 3]
            if name == "customs_declarations":
                row["destination_iso3"] = "ZZZ"
            if name == "overseas_warehouses":
                row["country_iso3"] = "ZZZ"
            if name == "fx_receipts":
                row["channel"] = "payment_institution" if i % 2 else "bank"
            if name == "marketplace_stores":
                row["store_id"] = f"LATE-{i}"
            if name == "macro_indicators":
                # a revised value for a month, arriving after T (later it is the latest month)
                row["period"] = ["2022-03", "2022-02", "2024-04"][i % 3]
                row["export_orders_pmi"] = 10.0 + i
        elif name == "buyers":
            row["buyer_id"] = f"BYZZZ{i:06d}"  # a buyer no firm has sold to yet
        else:
            lag = CONFIG.lag(name)
            day = (
                TS - pd.Timedelta(days=lag) + pd.Timedelta(days=1)
                if i % 2
                else TS + pd.Timedelta(days=3 + i)
            )
            row[spec.date_column] = day
            if name == "customs_credit":
                row["category"] = "dishonest"
            if name == "court_records":
                row["record_type"] = "dishonest_debtor"
                row["close_date"] = pd.NaT
            if name == "loans":
                row["maturity_date"] = day + pd.DateOffset(years=1)
            if name == "insurance_policies":
                row["end_date"] = day + pd.DateOffset(years=1)
            if name == "insurance_claims":
                row["decision_date"] = pd.NaT
        rows.append(row)
    return conform(name, pd.concat(rows, ignore_index=True))


@pytest.mark.parametrize("name", list(TABLES))
def test_truncating_a_source_to_what_was_known_at_t_changes_nothing(
    world: dict[str, pd.DataFrame], name: str
) -> None:
    full = build_snapshot(world, T)
    known = _known_at(name, world[name])
    # firms: registrations only; buyers: a static directory without dates (known at once)
    undated = name in ("firms", "buyers")
    assert len(known) < len(world[name]) or undated, f"{name}: nothing late to drop"
    truncated = build_snapshot({**world, name: known}, T)
    _assert_same(full, truncated)


def test_every_source_truncated_at_once(world: dict[str, pd.DataFrame]) -> None:
    known = {name: _known_at(name, df) for name, df in world.items()}
    _assert_same(build_snapshot(world, T), build_snapshot(known, T))


@pytest.mark.parametrize("name", list(TABLES))
def test_appending_late_rows_changes_nothing(world: dict[str, pd.DataFrame], name: str) -> None:
    late = _late_rows(name, world)
    appended = {**world, name: pd.concat([world[name], late], ignore_index=True)}
    before = build_snapshot(world, T)
    after = build_snapshot(appended, T)
    _assert_same(before, after)
    # the same rows do count once they are known (the test would catch a dead feature)
    later = date(2024, 6, 1)
    # New buyers change nothing until a firm sells to them (customs and fx rows do that).
    if name not in ("firms", "buyers"):
        assert not build_snapshot(world, later).equals(build_snapshot(appended, later))


# ------------------------------------------------------------------ exact visibility day
def _blank_firm() -> pd.DataFrame:
    code = uscc.generate(np.random.default_rng(999), 1)[0]
    return conform(
        "firms",
        pd.DataFrame(
            {
                "usc_code": [code],
                "name": ["深圳市空白跨境电商有限公司"],
                "district": ["futian"],
                "industry": ["toys"],
                "registration_date": [pd.Timestamp("2015-01-01")],
                "registered_capital_cny": [1e6],
                "customs_modes": ["9610"],
                "main_marketplace": ["amazon"],
                "own_brand": [False],
                "independent_site": [False],
                "high_tech": [False],
                "provincial_leader": [False],
                "deregistration_date": [pd.NaT],
            }
        ),
    )


MONTH_END = pd.Timestamp("2021-03-31")
ROWS: dict[str, dict] = {
    "tax": {
        "tax_year": 2020,
        "tax_grade": "B",
        "tax_paid_cny": 1e5,
        "export_rebate_cny": 1e4,
        "rebate_class": 2,
        "arrears_cny": 0.0,
    },
    "social_insurance": {"period": "2021-03", "insured_headcount": 12, "arrears_cny": 0.0},
    "utilities": {
        "period": "2021-03",
        "electricity_kwh": 900.0,
        "water_m3": 5.0,
        "late_payment": True,
    },
    "customs_declarations": {
        "period": "2021-03",
        "customs_mode": "9610",
        "destination_iso3": "USA",
        "declared_value_usd": 5e4,
        "declaration_count": 3,
        "returned_value_usd": 0.0,
        "inspection_anomalies": 0,
    },
    "customs_credit": {"effective_date": pd.Timestamp("2021-03-10"), "category": "aeo"},
    "fx_receipts": {"period": "2021-03", "channel": "bank", "received_usd": 4e4, "fx_class": "B"},
    "marketplace_stores": {
        "period": "2021-03",
        "marketplace": "temu",
        "store_id": "BLANK-1",
        "gmv_usd": 3e4,
        "orders": 100,
        "refund_rate": 0.05,
        "rating": 4.5,
        "account_status": "suspended",
        "payout_hold_usd": 10.0,
    },
    "overseas_warehouses": {"period": "2021-03", "country_iso3": "USA", "stock_value_usd": 2e4},
    "loans": {
        "loan_id": "BLANK-L1",
        "lender": "bank",
        "product": "credit_loan",
        "principal_cny": 1e6,
        "start_date": pd.Timestamp("2021-03-10"),
        "maturity_date": pd.Timestamp("2022-03-10"),
    },
    "loan_repayments": {
        "loan_id": "BLANK-L1",
        "period": "2021-03",
        "due_cny": 1e5,
        "paid_cny": 0.0,
        "days_past_due": 30,
        "outstanding_cny": 9e5,
    },
    "court_records": {
        "case_id": "BLANK-C1",
        "record_type": "judgment",
        "amount_cny": 1e5,
        "open_date": pd.Timestamp("2021-03-10"),
        "close_date": pd.NaT,
    },
    "admin_penalties": {
        "penalty_id": "BLANK-P1",
        "authority": "samr",
        "reason": "product_quality",
        "amount_cny": 5e3,
        "penalty_date": pd.Timestamp("2021-03-10"),
    },
    "insurance_policies": {
        "policy_id": "BLANK-Y1",
        "insurer": "sinosure",
        "start_date": pd.Timestamp("2021-03-10"),
        "end_date": pd.Timestamp("2022-03-10"),
        "insured_turnover_usd": 5e5,
        "buyer_limit_usd": 1e5,
        "claims_paid_usd": 0.0,
    },
    "insurance_claims": {
        "claim_id": "BLANK-CL1",
        "policy_id": "BLANK-Y1",
        "buyer_id": "BYUSA000000",
        "notified_date": pd.Timestamp("2021-03-10"),
        "loss_usd": 1e4,
        "paid_usd": 0.0,
        "decision_date": pd.NaT,
        "status": "pending",
    },
}


def _expected_availability(name: str) -> date:
    if name == "tax":
        return date(2021, 4, 15)  # the April publication of tax year 2020
    row = ROWS[name]
    base = MONTH_END if "period" in row else row[TABLES[name].date_column]
    return (base + pd.Timedelta(days=CONFIG.lag(name))).date()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_record_becomes_visible_exactly_when_its_lag_has_passed(
    world: dict[str, pd.DataFrame], name: str
) -> None:
    blank = _blank_firm()
    code = blank["usc_code"].iloc[0]
    base = {**world, "firms": pd.concat([world["firms"], blank], ignore_index=True)}
    row = conform(name, pd.DataFrame([{**ROWS[name], "usc_code": code}]))
    avail = _expected_availability(name)
    assert availability_dates(name, row, CONFIG).iloc[0] == pd.Timestamp(avail)
    with_row = {**base, name: pd.concat([base[name], row], ignore_index=True)}
    before = avail - timedelta(days=1)
    _assert_same(build_snapshot(base, before), build_snapshot(with_row, before))
    on_without = build_snapshot(base, avail).set_index("usc_code")
    on_with = build_snapshot(with_row, avail).set_index("usc_code")
    others = on_without.index != code
    pd.testing.assert_frame_equal(on_without[others], on_with[others], check_exact=True)
    changed = [
        c
        for c in CATALOG.names
        if not (
            on_without.loc[code, c] == on_with.loc[code, c]
            or (pd.isna(on_without.loc[code, c]) and pd.isna(on_with.loc[code, c]))
        )
    ]
    assert changed, f"{name}: the record did not show on its availability day {avail}"


def test_claim_decision_visible_after_its_own_lag(world: dict[str, pd.DataFrame]) -> None:
    blank = _blank_firm()
    code = blank["usc_code"].iloc[0]
    decided = pd.Timestamp("2021-06-01")
    row = {**ROWS["insurance_claims"], "usc_code": code, "decision_date": decided}
    tables = {
        **world,
        "firms": pd.concat([world["firms"], blank], ignore_index=True),
        "insurance_claims": pd.concat(
            [world["insurance_claims"], conform("insurance_claims", pd.DataFrame([row]))],
            ignore_index=True,
        ),
    }
    known = (
        decided + pd.Timedelta(days=CONFIG.lag("insurance_claims", "decision_lag_days"))
    ).date()

    def pending(day: date) -> float:
        return float(build_snapshot(tables, day).set_index("usc_code").loc[code, "claims_pending"])

    assert pending(known - timedelta(days=1)) == 1.0
    assert pending(known) == 0.0


def test_macro_month_visible_to_every_firm_when_published(world: dict[str, pd.DataFrame]) -> None:
    row = conform(
        "macro_indicators",
        pd.DataFrame(
            [
                {
                    "period": "2025-01",
                    "export_orders_pmi": 41.5,
                    "freight_cost_index": 180.0,
                    "western_demand_index": 90.0,
                }
            ]
        ),
    )
    tables = {
        **world,
        "macro_indicators": pd.concat([world["macro_indicators"], row], ignore_index=True),
    }
    published = pd.Timestamp("2025-01-31") + pd.Timedelta(days=CONFIG.lag("macro_indicators"))
    before = build_snapshot(tables, (published - pd.Timedelta(days=1)).date())
    on = build_snapshot(tables, published.date())
    assert (before["macro_export_orders_pmi"] != 41.5).all()
    assert (on["macro_export_orders_pmi"] == 41.5).all() and len(on) > 0
    assert (on["macro_freight_cost_index"] == 180.0).all()


def test_court_closure_visible_after_its_own_lag(world: dict[str, pd.DataFrame]) -> None:
    blank = _blank_firm()
    code = blank["usc_code"].iloc[0]
    closed = pd.Timestamp("2021-08-01")
    row = conform(
        "court_records",
        pd.DataFrame(
            [
                {
                    **ROWS["court_records"],
                    "usc_code": code,
                    "record_type": "enforcement",
                    "close_date": closed,
                }
            ]
        ),
    )
    tables = {
        **world,
        "firms": pd.concat([world["firms"], blank], ignore_index=True),
        "court_records": pd.concat([world["court_records"], row], ignore_index=True),
    }
    known = (closed + pd.Timedelta(days=CONFIG.lag("court_records", "close_lag_days"))).date()

    def open_cases(day: date) -> float:
        snap = build_snapshot(tables, day).set_index("usc_code")
        return float(snap.loc[code, "enforcement_open"])

    assert open_cases(known - timedelta(days=1)) == 1.0
    assert open_cases(known) == 0.0


def test_firm_is_live_from_the_day_after_registration_until_deregistration(
    world: dict[str, pd.DataFrame],
) -> None:
    blank = _blank_firm()
    blank["registration_date"] = pd.Timestamp("2021-03-10")
    blank["deregistration_date"] = pd.Timestamp("2022-01-20")
    code = blank["usc_code"].iloc[0]
    tables = {**world, "firms": pd.concat([world["firms"], blank], ignore_index=True)}

    def live(day: date) -> bool:
        return code in set(build_snapshot(tables, day)["usc_code"])

    assert not live(date(2021, 3, 10))
    assert live(date(2021, 3, 11))
    assert live(date(2022, 1, 20))  # deregistered on T: not before T
    assert not live(date(2022, 1, 21))
