"""A small random platform world with every clean table, for the feature tests.

Independent of the simulator on purpose: the point-in-time and label tests need tables whose
every row they control. Values are random but respect ``features.tables`` (types, allowed
values); some firms lack each optional source so missingness is exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import uscc
from features.tables import (
    CUSTOMS_CREDIT,
    CUSTOMS_MODES,
    DISTRICTS,
    FX_CLASSES,
    INDUSTRIES,
    MARKETPLACES,
    PENALTY_AUTHORITIES,
    PENALTY_REASONS,
    TABLES,
    TAX_GRADES,
)

START, END = pd.Period("2019-01", "M"), pd.Period("2024-12", "M")
BUYERS = [f"BY{c}{k:06d}" for c in ("USA", "DEU", "BRA") for k in range(4)]
MONTHS = pd.period_range(START, END, freq="M")
DESTS = ["USA", "GBR", "DEU", "RUS", "BRA", "NGA", "VNM", "XYZ"]


def _periods(rng: np.random.Generator, firm: int, first: pd.Period) -> list[str]:
    """Months from ``first`` with a few random gaps."""
    months = [p for p in MONTHS if p >= first]
    keep = rng.random(len(months)) > 0.08
    return [str(p) for p, k in zip(months, keep, strict=True) if k]


def make_world(n_firms: int = 30, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Build every clean table for ``n_firms`` random firms over 2019-2024.

    Parameters
    ----------
    n_firms : int
        Number of firms.
    seed : int
        Random seed.

    Returns
    -------
    dict of str to pandas.DataFrame
        Clean tables with the columns and dtypes of ``features.tables``.
    """
    rng = np.random.default_rng(seed)
    codes = uscc.generate(rng, n_firms)
    reg = pd.to_datetime("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n_firms), "D")
    dereg = pd.Series(pd.NaT, index=range(n_firms), dtype="datetime64[ns]")
    dereg[rng.random(n_firms) < 0.1] = pd.Timestamp("2023-06-30")
    modes = [
        ",".join(sorted(rng.choice(CUSTOMS_MODES, rng.integers(1, 4), replace=False)))
        for _ in range(n_firms)
    ]
    firms = pd.DataFrame(
        {
            "usc_code": codes,
            "name": [f"深圳市测试{i}跨境电商有限公司" for i in range(n_firms)],
            "district": rng.choice(DISTRICTS, n_firms),
            "industry": rng.choice(INDUSTRIES, n_firms),
            "registration_date": reg.astype("datetime64[ns]"),
            "registered_capital_cny": rng.uniform(1e5, 1e7, n_firms).round(0),
            "customs_modes": modes,
            "main_marketplace": pd.Series(rng.choice(MARKETPLACES, n_firms)).where(
                rng.random(n_firms) > 0.1, None
            ),
            "own_brand": rng.random(n_firms) < 0.5,
            "independent_site": rng.random(n_firms) < 0.3,
            "high_tech": rng.random(n_firms) < 0.1,
            "provincial_leader": rng.random(n_firms) < 0.05,
            "deregistration_date": dereg,
        }
    )
    first = [max(pd.Period(r, "M"), START) for r in reg]
    rows: dict[str, list[dict]] = {name: [] for name in TABLES if name != "firms"}
    _reference_rows(rng, rows)
    loan_no = case_no = pen_no = pol_no = 0
    for i, code in enumerate(codes):
        size = rng.lognormal(10, 1)
        for year in range(2015, 2025):
            if year >= reg[i].year:
                rows["tax"].append(
                    {
                        "usc_code": code,
                        "tax_year": year,
                        "tax_grade": rng.choice(TAX_GRADES),
                        "tax_paid_cny": round(size * rng.uniform(0.5, 2), 2),
                        "export_rebate_cny": round(size * rng.uniform(0, 1), 2),
                        "rebate_class": int(rng.integers(1, 5)),
                        "arrears_cny": float(rng.choice([0.0, 0.0, 5000.0])),
                    }
                )
        if i % 7 != 3:  # some firms have no social-insurance data
            for p in _periods(rng, i, first[i]):
                rows["social_insurance"].append(
                    {
                        "usc_code": code,
                        "period": p,
                        "insured_headcount": int(rng.integers(0, 60)),
                        "arrears_cny": float(rng.choice([0.0, 0.0, 0.0, 1200.0])),
                    }
                )
        if i % 5 != 1:
            for p in _periods(rng, i, first[i]):
                rows["utilities"].append(
                    {
                        "usc_code": code,
                        "period": p,
                        "electricity_kwh": float(rng.uniform(100, 5000)),
                        "water_m3": float(rng.uniform(1, 50)),
                        "late_payment": bool(rng.random() < 0.1),
                    }
                )
        if i % 6 != 2:
            for p in _periods(rng, i, first[i]):
                for mode in rng.choice(CUSTOMS_MODES, 2, replace=False):
                    rows["customs_declarations"].append(
                        {
                            "usc_code": code,
                            "period": p,
                            "customs_mode": mode,
                            "destination_iso3": rng.choice(DESTS),
                            "declared_value_usd": float(
                                rng.choice([0.0, size * rng.uniform(0.1, 1)])
                            ),
                            "declaration_count": int(rng.integers(0, 40)),
                            "returned_value_usd": float(rng.uniform(0, 100)),
                            "inspection_anomalies": int(rng.random() < 0.05),
                            "buyer_id": rng.choice(BUYERS) if mode in ("9710", "0110") else None,
                        }
                    )
        if i % 4 == 0:
            for k, day in enumerate(sorted(rng.choice(2000, 3, replace=False))):
                rows["customs_credit"].append(
                    {
                        "usc_code": code,
                        "effective_date": pd.Timestamp("2019-01-01") + pd.Timedelta(days=int(day)),
                        "category": CUSTOMS_CREDIT[(k + i) % 3],
                    }
                )
        if i % 6 != 4:
            for p in _periods(rng, i, first[i]):
                for channel in ("bank", "payment_institution"):
                    if rng.random() < 0.7:
                        rows["fx_receipts"].append(
                            {
                                "usc_code": code,
                                "period": p,
                                "channel": channel,
                                "received_usd": float(size * rng.uniform(0, 0.8)),
                                "fx_class": rng.choice(FX_CLASSES, p=[0.8, 0.15, 0.05]),
                                "buyer_id": None,
                                "expected_usd": float(size * 0.8),
                                "days_beyond_terms": 0.0,
                            }
                        )
                if i % 2 == 1 and rng.random() < 0.6:  # a named buyer paying, late at times
                    due = float(size * rng.uniform(0.1, 0.5))
                    rows["fx_receipts"].append(
                        {
                            "usc_code": code,
                            "period": p,
                            "channel": "bank",
                            "received_usd": due * float(rng.choice([1.0, 1.0, 0.5, 0.0])),
                            "fx_class": "A",
                            "buyer_id": BUYERS[i % len(BUYERS)],
                            "expected_usd": due,
                            "days_beyond_terms": float(rng.choice([0.0, 2.0, 45.0])),
                        }
                    )
        if i % 5 != 0:
            for s in range(int(rng.integers(1, 4))):
                mkt = rng.choice(MARKETPLACES)
                store_first = max(first[i], START + int(rng.integers(0, 40)))
                for p in _periods(rng, i, store_first):
                    rows["marketplace_stores"].append(
                        {
                            "usc_code": code,
                            "period": p,
                            "marketplace": mkt,
                            "store_id": f"S{i:03d}-{s}",
                            "gmv_usd": float(size * rng.uniform(0, 1)),
                            "orders": int(rng.integers(0, 500)),
                            "refund_rate": float(rng.uniform(0, 0.2)),
                            "rating": float(rng.uniform(3, 5)) if rng.random() > 0.1 else np.nan,
                            "account_status": rng.choice(
                                ["active", "warning", "suspended"], p=[0.85, 0.1, 0.05]
                            ),
                            "payout_hold_usd": float(rng.choice([0.0, 0.0, 300.0])),
                        }
                    )
        if i % 3 == 0:
            for p in _periods(rng, i, first[i]):
                for country in ("USA", "DEU"):
                    rows["overseas_warehouses"].append(
                        {
                            "usc_code": code,
                            "period": p,
                            "country_iso3": country,
                            "stock_value_usd": float(size * rng.uniform(0, 2)),
                        }
                    )
        if i % 2 == 0:
            for _ in range(int(rng.integers(1, 4))):
                loan_no += 1
                start = pd.Timestamp("2019-01-01") + pd.Timedelta(days=int(rng.integers(0, 1800)))
                loan_id = f"L{loan_no:05d}"
                months = int(rng.integers(6, 24))
                rows["loans"].append(
                    {
                        "loan_id": loan_id,
                        "usc_code": code,
                        "lender": "bank",
                        "product": "credit_loan",
                        "principal_cny": 1e6,
                        "start_date": start,
                        "maturity_date": start + pd.DateOffset(months=months),
                    }
                )
                for k in range(months):
                    p = pd.Period(start, "M") + k + 1
                    if p > END:
                        break
                    rows["loan_repayments"].append(
                        {
                            "loan_id": loan_id,
                            "usc_code": code,
                            "period": str(p),
                            "due_cny": 1e6 / months,
                            "paid_cny": 1e6 / months * float(rng.choice([1.0, 1.0, 0.5])),
                            "days_past_due": int(rng.choice([0, 0, 0, 0, 15, 45, 100])),
                            "outstanding_cny": 1e6 * (1 - (k + 1) / months),
                            "restructured": bool(rng.random() < 0.05),
                        }
                    )
        for _ in range(int(rng.poisson(0.8))):
            case_no += 1
            opened = pd.Timestamp("2019-01-01") + pd.Timedelta(days=int(rng.integers(0, 2150)))
            closed = opened + pd.Timedelta(days=int(rng.integers(30, 400)))
            rows["court_records"].append(
                {
                    "case_id": f"C{case_no:05d}",
                    "usc_code": code,
                    "record_type": rng.choice(["judgment", "enforcement", "dishonest_debtor"]),
                    "amount_cny": float(rng.uniform(1e4, 1e6)),
                    "open_date": opened,
                    "close_date": closed if rng.random() < 0.5 else pd.NaT,
                }
            )
        for _ in range(int(rng.poisson(0.7))):
            pen_no += 1
            rows["admin_penalties"].append(
                {
                    "penalty_id": f"P{pen_no:05d}",
                    "usc_code": code,
                    "authority": rng.choice(PENALTY_AUTHORITIES),
                    "reason": rng.choice(PENALTY_REASONS),
                    "amount_cny": float(rng.uniform(1e3, 1e5)),
                    "penalty_date": pd.Timestamp("2019-01-01")
                    + pd.Timedelta(days=int(rng.integers(0, 2150))),
                }
            )
        if i % 3 == 1:
            for year in range(2019 + i % 2, 2025):
                pol_no += 1
                start = pd.Timestamp(f"{year}-03-01")
                rows["insurance_policies"].append(
                    {
                        "policy_id": f"Y{pol_no:05d}",
                        "usc_code": code,
                        "insurer": "sinosure",
                        "start_date": start,
                        "end_date": start + pd.DateOffset(years=1),
                        "insured_turnover_usd": float(size * 5),
                        "buyer_limit_usd": float(size),
                        "claims_paid_usd": float(rng.choice([0.0, 0.0, size / 10])),
                    }
                )
                if rng.random() < 0.5:  # a buyer did not pay a shipment under this policy
                    notified = start + pd.Timedelta(days=int(rng.integers(30, 330)))
                    decided = notified + pd.Timedelta(days=int(rng.integers(20, 200)))
                    paid = rng.random() < 0.7
                    rows["insurance_claims"].append(
                        {
                            "claim_id": f"CL{pol_no:05d}",
                            "policy_id": f"Y{pol_no:05d}",
                            "usc_code": code,
                            "buyer_id": BUYERS[pol_no % len(BUYERS)],
                            "notified_date": notified,
                            "loss_usd": float(size / 5),
                            "paid_usd": float(size / 6) if paid else 0.0,
                            "decision_date": decided
                            if decided < pd.Timestamp("2024-12-01")
                            else pd.NaT,
                            "status": ("paid" if paid else "declined")
                            if decided < pd.Timestamp("2024-12-01")
                            else "pending",
                        }
                    )
    out = {"firms": firms}
    for name, recs in rows.items():
        out[name] = conform(name, pd.DataFrame(recs))
    return out


def _reference_rows(rng: np.random.Generator, rows: dict[str, list[dict]]) -> None:
    """The tables not keyed by firm: the buyer directory and the monthly macro indicators."""
    for k, buyer in enumerate(BUYERS):
        rows["buyers"].append(
            {
                "buyer_id": buyer,
                "name": f"Buyer {k} Ltd",
                "country_iso3": buyer[2:5],
                "size_band": ("small", "medium", "large")[k % 3],
                "sector": "importer",
            }
        )
    for j, p in enumerate(MONTHS):
        rows["macro_indicators"].append(
            {
                "period": str(p),
                "export_orders_pmi": float(50 + 3 * np.sin(j / 5) + rng.normal(0, 0.5)),
                "freight_cost_index": float(100 * np.exp(0.2 * np.sin(j / 7))),
                "western_demand_index": float(100 + j * 0.1 + rng.normal(0, 0.3)),
            }
        )


def conform(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Give ``df`` exactly the columns and clean dtypes of table ``name``."""
    dtypes = {
        "str": "str",
        "category": "str",
        "int": "int64",
        "float": "float64",
        "bool": "bool",
        "date": "datetime64[ns]",
    }
    spec = TABLES[name]
    data = {}
    for col in spec.columns:
        s = df[col.name] if col.name in df else pd.Series([], dtype="object")
        data[col.name] = s.astype(dtypes[col.dtype]) if len(s) or col.name in df else s
    return pd.DataFrame(data).astype({c.name: dtypes[c.dtype] for c in spec.columns})
