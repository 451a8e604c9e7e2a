"""Vectorised feature families: clean tables → one array per catalog feature.

:func:`prepare` converts the clean tables once into integer-coded frames (``fid`` = position of
the firm in the sorted firm list, ``m`` = month index) sorted stably by firm and date, with the
firm-month aggregates the features need. :func:`compute_features` then builds every feature at
one as-of date from those frames with boolean masks, ``numpy.bincount`` and group-bys, never a
per-firm Python loop, so building many as-of dates (the training set) re-uses the preparation.

Visibility is decided before any aggregation: a monthly group ``(firm, month)`` is visible when
its month is on or before the table's last visible month; an event row when its date plus the
lag is on or before the as-of date. Rows that are not yet visible therefore cannot change a
snapshot, whatever their values.

Missing values: a feature is NaN when the firm has no visible row in its source (the source is
missing for the firm); it is 0 when the firm has the source but nothing in the window. Court,
penalty and insurance records cover every firm, so their counts are 0, and their recency
features take ``recency_cap_months``, when the firm has no record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.feature_availability import SnapshotConfig, period_to_month_index
from features.tables import CUSTOMS_MODES, MARKETPLACES, TABLES

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]

#: Columns each table contributes (the snapshot file reader loads only these).
NEEDED_COLUMNS: dict[str, list[str]] = {
    "firms": [
        "usc_code",
        "name",
        "district",
        "industry",
        "registration_date",
        "registered_capital_cny",
        "customs_modes",
        "main_marketplace",
        "own_brand",
        "independent_site",
        "high_tech",
        "provincial_leader",
        "deregistration_date",
    ],
    "tax": [
        "usc_code",
        "tax_year",
        "tax_grade",
        "tax_paid_cny",
        "export_rebate_cny",
        "rebate_class",
        "arrears_cny",
    ],
    "social_insurance": ["usc_code", "period", "insured_headcount", "arrears_cny"],
    "utilities": ["usc_code", "period", "electricity_kwh", "water_m3", "late_payment"],
    "customs_declarations": [
        "usc_code",
        "period",
        "customs_mode",
        "destination_iso3",
        "declared_value_usd",
        "declaration_count",
        "returned_value_usd",
        "inspection_anomalies",
        "buyer_id",
    ],
    "customs_credit": ["usc_code", "effective_date", "category"],
    "fx_receipts": [
        "usc_code",
        "period",
        "channel",
        "received_usd",
        "fx_class",
        "buyer_id",
        "expected_usd",
        "days_beyond_terms",
    ],
    "marketplace_stores": [
        "usc_code",
        "period",
        "marketplace",
        "store_id",
        "gmv_usd",
        "orders",
        "refund_rate",
        "rating",
        "account_status",
        "payout_hold_usd",
    ],
    "overseas_warehouses": ["usc_code", "period", "country_iso3", "stock_value_usd"],
    "loans": ["usc_code", "loan_id", "start_date"],
    "loan_repayments": [
        "usc_code",
        "loan_id",
        "period",
        "due_cny",
        "paid_cny",
        "days_past_due",
        "outstanding_cny",
        "restructured",
    ],
    "court_records": ["usc_code", "record_type", "amount_cny", "open_date", "close_date"],
    "admin_penalties": ["usc_code", "reason", "amount_cny", "penalty_date"],
    "insurance_policies": [
        "usc_code",
        "start_date",
        "end_date",
        "insured_turnover_usd",
        "buyer_limit_usd",
        "claims_paid_usd",
    ],
    "insurance_claims": ["usc_code", "notified_date", "loss_usd", "decision_date", "status"],
    "macro_indicators": [
        "period",
        "export_orders_pmi",
        "freight_cost_index",
        "western_demand_index",
    ],
}


@dataclass
class Prepared:
    """Clean tables coded for fast point-in-time aggregation.

    Attributes
    ----------
    firms : pandas.DataFrame
        The firm table sorted by ``usc_code`` (position = ``fid``).
    frames : dict of str to pandas.DataFrame
        Per source: integer ``fid`` and ``m`` (monthly) or dates (events), plus values,
        sorted stably by firm and date; firm-month aggregates under ``<table>:fm``.
    config : SnapshotConfig
        Lags and parameters used.
    """

    firms: pd.DataFrame
    frames: dict[str, pd.DataFrame]
    config: SnapshotConfig

    @property
    def n(self) -> int:
        """Number of firms."""
        return len(self.firms)


# --------------------------------------------------------------------------- small kernels
def _sum(fid: np.ndarray, weights: np.ndarray | pd.Series, n: int) -> np.ndarray:
    """Per-firm sum (0 for firms without rows)."""
    return np.bincount(fid, weights=np.asarray(weights, dtype=np.float64), minlength=n)


def _count(fid: np.ndarray, n: int) -> np.ndarray:
    """Per-firm row count as float."""
    return np.bincount(fid, minlength=n).astype(np.float64)


def _max(fid: np.ndarray, values: np.ndarray | pd.Series, n: int, fill: float) -> np.ndarray:
    """Per-firm maximum (``fill`` for firms without rows)."""
    out = np.full(n, fill, dtype=np.float64)
    if len(fid):
        s = pd.Series(np.asarray(values, dtype=np.float64)).groupby(fid, sort=False).max()
        out[s.index.to_numpy()] = s.to_numpy()
    return out


def _min(fid: np.ndarray, values: np.ndarray | pd.Series, n: int, fill: float) -> np.ndarray:
    """Per-firm minimum (``fill`` for firms without rows)."""
    return -_max(fid, -np.asarray(values, dtype=np.float64), n, -fill)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where the denominator is zero or missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _growth(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``now / before - 1``; NaN when there is no base."""
    return _ratio(now, before) - 1.0


def _where_present(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """NaN for firms without the source."""
    return np.where(present, values, np.nan)


def _window(m: np.ndarray, last: int, months: int) -> np.ndarray:
    """Mask of the ``months`` months ending at month ``last`` (inclusive)."""
    return (m > last - months) & (m <= last)


def _codes(values: pd.Series, universe: list[str] | tuple[str, ...]) -> np.ndarray:
    """Integer code of each value within ``universe`` (-1 when outside it or missing)."""
    lookup = {v: float(i) for i, v in enumerate(universe)}
    return _map_values(values, lookup, -1.0).astype(np.int16)


def _map_values(values: pd.Series, mapping: dict, default: float) -> np.ndarray:
    """Map values through ``mapping`` (``default`` when absent), one lookup per distinct value."""
    codes, uniques = pd.factorize(values)
    mapped = np.array(
        [mapping.get(u, default) for u in np.asarray(uniques, dtype=object)] + [default],
        dtype=np.float64,
    )
    return mapped[codes]  # code -1 (missing) picks the trailing default


# --------------------------------------------------------------------------- preparation
def _firm_ids(codes: pd.Series, firm_set: pa.Array, table: str) -> np.ndarray:
    """Position of each row's firm in the sorted firm list (-1 when unknown)."""
    found = pc.fill_null(pc.index_in(pa.array(codes), value_set=firm_set), -1)
    fid = np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown = int((fid < 0).sum())
    if unknown:
        log.warning("%s: %d rows name firms missing from the firms table; not used", table, unknown)
    return fid


def _ordered(fid: np.ndarray, key: np.ndarray) -> np.ndarray | None:
    """Stable (firm, key) order of the rows with a known firm; None when already in order."""
    combined = fid * (1 << 32) + key
    keep = fid >= 0
    if keep.all() and (len(combined) < 2 or bool(np.all(combined[1:] >= combined[:-1]))):
        return None
    idx = np.flatnonzero(keep)
    return idx[np.argsort(combined[idx], kind="stable")]


def _monthly(
    df: pd.DataFrame, firm_set: pa.Array, table: str, values: dict[str, np.ndarray | pd.Series]
) -> pd.DataFrame:
    """Firm id, month index and ``values`` in (firm, month) order; rows of known firms only."""
    fid = _firm_ids(df["usc_code"], firm_set, table)
    m = period_to_month_index(df["period"]).astype(np.int64)
    cols = {"fid": fid, "m": m, **{k: np.asarray(v) for k, v in values.items()}}
    order = _ordered(fid, m)
    if order is not None:
        cols = {k: v[order] for k, v in cols.items()}
    return pd.DataFrame(cols)


def _events(df: pd.DataFrame, firm_set: pa.Array, table: str, date_col: str) -> pd.DataFrame:
    """Event rows of known firms with their firm id, in (firm, date) order."""
    fid = _firm_ids(df["usc_code"], firm_set, table)
    key = df[date_col].to_numpy()
    if key.dtype.kind == "M":
        key = key.astype("datetime64[D]").astype(np.int64)
    out = df.drop(columns=["usc_code"]).assign(fid=fid)
    order = _ordered(fid, np.asarray(key, dtype=np.int64))
    if order is not None:
        out = out.iloc[order]
    return out.reset_index(drop=True)


def _firm_month(frame: pd.DataFrame, aggs: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Aggregate a monthly frame to one row per (firm, month)."""
    return frame.groupby(["fid", "m"], sort=True).agg(**aggs).reset_index()


Frames = dict[str, pd.DataFrame]


def _prep_tax(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    tax = _events(t, ids, "tax", "tax_year")
    points = config.params["tax_grade_points"]
    frames["tax"] = tax.assign(points=_map_values(tax["tax_grade"], points, np.nan))


def _prep_social_insurance(
    t: pd.DataFrame, ids: pa.Array, _: SnapshotConfig, frames: Frames
) -> None:
    frames["social_insurance"] = _monthly(
        t,
        ids,
        "social_insurance",
        {
            "insured_headcount": t["insured_headcount"].to_numpy(np.float64),
            "arrears_cny": t["arrears_cny"].to_numpy(np.float64),
        },
    )


def _prep_utilities(t: pd.DataFrame, ids: pa.Array, _: SnapshotConfig, frames: Frames) -> None:
    frames["utilities"] = _monthly(
        t,
        ids,
        "utilities",
        {
            "electricity_kwh": t["electricity_kwh"].to_numpy(np.float64),
            "water_m3": t["water_m3"].to_numpy(np.float64),
            "late_payment": t["late_payment"].to_numpy(bool),
        },
    )


def _prep_customs(cd: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    """Detail rows (mode, destination and buyer windows) and firm-month totals."""
    p = config.params
    risk_table = {k: float(v) for k, v in p["country_risk"].items()}
    cu = _monthly(
        cd,
        ids,
        "customs_declarations",
        {
            "mode_code": _codes(cd["customs_mode"], CUSTOMS_MODES),
            "dest_code": pd.factorize(cd["destination_iso3"])[0],
            "dest_risk": _map_values(
                cd["destination_iso3"], risk_table, float(p["unknown_country_risk"])
            ),
            "buyer": _buyer_codes(cd["buyer_id"]),
            "declared_value_usd": cd["declared_value_usd"].to_numpy(np.float64),
            "declaration_count": cd["declaration_count"].to_numpy(np.float64),
            "returned_value_usd": cd["returned_value_usd"].to_numpy(np.float64),
            "inspection_anomalies": cd["inspection_anomalies"].to_numpy(np.float64),
        },
    )
    frames["customs_declarations"] = cu
    frames["customs_declarations:fm"] = _firm_month(
        cu,
        {
            "declared": ("declared_value_usd", "sum"),
            "returned": ("returned_value_usd", "sum"),
            "anomalies": ("inspection_anomalies", "sum"),
            "declarations": ("declaration_count", "sum"),
        },
    )


def _buyer_codes(buyer_id: pd.Series) -> np.ndarray:
    """Return a stable integer per buyer id (its hash; -1 when there is no buyer).

    Hashing the id (not factorising it) gives the same code in every table and in every
    partition of a distributed build.
    """
    codes = pd.util.hash_pandas_object(buyer_id.astype("str"), index=False).to_numpy()
    out = (codes >> np.uint64(1)).astype(np.int64)
    return np.where(buyer_id.isna().to_numpy(), -1, out)


def _prep_customs_credit(
    t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames
) -> None:
    cc = _events(t, ids, "customs_credit", "effective_date")
    rank = _codes(cc["category"], config.params["customs_credit_order"]).astype(np.float64)
    prev_rank = pd.Series(rank).groupby(cc["fid"].to_numpy()).shift(1).to_numpy()
    frames["customs_credit"] = cc.assign(
        downgrade=(rank > prev_rank) & ~np.isnan(prev_rank),
        avail=cc["effective_date"] + pd.Timedelta(days=config.lag("customs_credit")),
    )


def _prep_fx(fxr: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    """Firm-month totals, and the rows paid by named buyers (expected, late, buyer code)."""
    received = fxr["received_usd"].to_numpy(np.float64)
    late_days = float(config.params["buyer_late_days"])
    fx = _monthly(
        fxr,
        ids,
        "fx_receipts",
        {
            "received_usd": received,
            "pi_usd": received * (fxr["channel"] == "payment_institution").to_numpy(np.float64),
            "cls_rank": _codes(fxr["fx_class"], config.params["fx_class_order"]),
            "buyer": _buyer_codes(fxr["buyer_id"]),
            "expected_usd": fxr["expected_usd"].to_numpy(np.float64),
            "late": (fxr["days_beyond_terms"].to_numpy(np.float64) > late_days),
        },
    )
    frames["fx_receipts:fm"] = _firm_month(
        fx,
        {
            "received": ("received_usd", "sum"),
            "pi": ("pi_usd", "sum"),
            "cls_rank": ("cls_rank", "max"),
        },
    )
    frames["fx_receipts:buyers"] = fx[fx["buyer"].to_numpy() >= 0].reset_index(drop=True)


def _prep_stores(ms: pd.DataFrame, ids: pa.Array, _: SnapshotConfig, frames: Frames) -> None:
    status = ms["account_status"]
    rating = ms["rating"].to_numpy(np.float64)
    orders = ms["orders"].to_numpy(np.float64)
    st = _monthly(
        ms,
        ids,
        "marketplace_stores",
        {
            "mkt_code": _codes(ms["marketplace"], MARKETPLACES),
            "store_code": pd.factorize(ms["store_id"])[0],
            "gmv_usd": ms["gmv_usd"].to_numpy(np.float64),
            "orders": orders,
            "refunded": ms["refund_rate"].to_numpy(np.float64) * orders,
            "rating": np.nan_to_num(rating),
            "rated": (~np.isnan(rating)).astype(np.float64),
            "active": (status == "active").to_numpy(np.float64),
            "warning": (status == "warning").to_numpy(np.float64),
            "suspended": (status == "suspended").to_numpy(np.float64),
            "payout_hold_usd": ms["payout_hold_usd"].to_numpy(np.float64),
        },
    )
    frames["marketplace_stores"] = st
    frames["marketplace_stores:fm"] = _firm_month(
        st,
        {
            "gmv": ("gmv_usd", "sum"),
            "orders": ("orders", "sum"),
            "refunded": ("refunded", "sum"),
            "rating_sum": ("rating", "sum"),
            "rated": ("rated", "sum"),
            "stores": ("store_code", "size"),
            "active": ("active", "sum"),
            "warning": ("warning", "sum"),
            "suspended": ("suspended", "sum"),
            "hold": ("payout_hold_usd", "sum"),
        },
    )


def _prep_warehouses(ow: pd.DataFrame, ids: pa.Array, _: SnapshotConfig, frames: Frames) -> None:
    wh = _monthly(
        ow,
        ids,
        "overseas_warehouses",
        {
            "country": pd.factorize(ow["country_iso3"])[0],
            "stock_value_usd": ow["stock_value_usd"].to_numpy(np.float64),
        },
    )
    frames["overseas_warehouses:fm"] = _firm_month(
        wh, {"stock": ("stock_value_usd", "sum"), "countries": ("country", "nunique")}
    )


def _prep_loans(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    loans = _events(t, ids, "loans", "start_date")
    frames["loans"] = loans.assign(
        avail=loans["start_date"] + pd.Timedelta(days=config.lag("loans"))
    )


def _prep_repayments(lr: pd.DataFrame, ids: pa.Array, _: SnapshotConfig, frames: Frames) -> None:
    outstanding = lr["outstanding_cny"].to_numpy(np.float64)
    rp = _monthly(
        lr,
        ids,
        "loan_repayments",
        {
            "due_cny": lr["due_cny"].to_numpy(np.float64),
            "paid_cny": lr["paid_cny"].to_numpy(np.float64),
            "days_past_due": lr["days_past_due"].to_numpy(np.float64),
            "outstanding_cny": outstanding,
            "active": (outstanding > 0).astype(np.float64),
            "restructured": lr["restructured"].to_numpy(np.float64),
        },
    )
    frames["loan_repayments:fm"] = _firm_month(
        rp,
        {
            "outstanding": ("outstanding_cny", "sum"),
            "active": ("active", "sum"),
            "dpd": ("days_past_due", "max"),
            "due": ("due_cny", "sum"),
            "paid": ("paid_cny", "sum"),
            "restructured": ("restructured", "sum"),
        },
    )


def _prep_courts(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    cr = _events(t, ids, "court_records", "open_date")
    frames["court_records"] = cr.assign(
        avail=cr["open_date"] + pd.Timedelta(days=config.lag("court_records")),
        close_avail=cr["close_date"]
        + pd.Timedelta(days=config.lag("court_records", "close_lag_days")),
    )


def _prep_penalties(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    pen = _events(t, ids, "admin_penalties", "penalty_date")
    frames["admin_penalties"] = pen.assign(
        avail=pen["penalty_date"] + pd.Timedelta(days=config.lag("admin_penalties"))
    )


def _prep_policies(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    ins = _events(t, ids, "insurance_policies", "start_date")
    frames["insurance_policies"] = ins.assign(
        avail=ins["start_date"] + pd.Timedelta(days=config.lag("insurance_policies")),
        settled=ins["end_date"]
        + pd.Timedelta(days=config.lag("insurance_policies", "claims_lag_days")),
    )


def _prep_claims(t: pd.DataFrame, ids: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    cl = _events(t, ids, "insurance_claims", "notified_date")
    frames["insurance_claims"] = cl.assign(
        avail=cl["notified_date"] + pd.Timedelta(days=config.lag("insurance_claims")),
        decided=cl["decision_date"]
        + pd.Timedelta(days=config.lag("insurance_claims", "decision_lag_days")),
    )


def _prep_macro(mi: pd.DataFrame, _: pa.Array, config: SnapshotConfig, frames: Frames) -> None:
    """Macro indicators by month index (not firm-level), published ``lag_days`` after month end."""
    m = period_to_month_index(mi["period"]).astype(np.int64)
    cols = [c for c in TABLES["macro_indicators"].column_names if c != "period"]
    frame = pd.DataFrame({"m": m, **{c: mi[c].to_numpy(np.float64) for c in cols}})
    frames["macro_indicators"] = frame.sort_values("m", kind="stable").reset_index(drop=True)


#: How each clean table is coded, in order (each table is read once and released after).
PREPARERS = {
    "tax": _prep_tax,
    "social_insurance": _prep_social_insurance,
    "utilities": _prep_utilities,
    "customs_declarations": _prep_customs,
    "customs_credit": _prep_customs_credit,
    "fx_receipts": _prep_fx,
    "marketplace_stores": _prep_stores,
    "overseas_warehouses": _prep_warehouses,
    "loans": _prep_loans,
    "loan_repayments": _prep_repayments,
    "court_records": _prep_courts,
    "admin_penalties": _prep_penalties,
    "insurance_policies": _prep_policies,
    "insurance_claims": _prep_claims,
    "macro_indicators": _prep_macro,
}


def prepare(tables: Mapping[str, pd.DataFrame], config: SnapshotConfig) -> Prepared:
    """Code the clean tables for point-in-time aggregation (done once per set of tables).

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Clean tables; ``firms`` is required, any other missing table counts as empty. Each
        table is looked up once and released after its block, so a lazy mapping that reads
        tables on access (``features.snapshot.CleanTables``) keeps one raw table in memory
        at a time.
    config : SnapshotConfig
        Lags and parameters.

    Returns
    -------
    Prepared
    """
    if "firms" not in tables:
        raise ValueError("tables must include 'firms'")

    def table(name: str) -> pd.DataFrame:
        if name in tables:
            return tables[name]
        spec = TABLES[name]
        return pd.DataFrame({c.name: pd.Series(dtype=_empty_dtype(c.dtype)) for c in spec.columns})

    firms = table("firms").sort_values("usc_code", kind="stable").reset_index(drop=True)
    if firms["usc_code"].duplicated().any():
        dupes = firms.loc[firms["usc_code"].duplicated(), "usc_code"].head(3).tolist()
        raise ValueError(f"firms.usc_code must be unique; duplicated e.g. {dupes}")
    ids = pa.array(firms["usc_code"].astype("str"))
    frames: Frames = {}
    for name, prep_table in PREPARERS.items():
        prep_table(table(name), ids, config, frames)
    return Prepared(firms=firms, frames=frames, config=config)


def _empty_dtype(logical: str) -> str:
    return {"int": "int64", "float": "float64", "bool": "bool", "date": "datetime64[ns]"}.get(
        logical, "str"
    )


# --------------------------------------------------------------------------- families
def _firm(prep: Prepared, t: pd.Timestamp) -> Arrays:
    f = prep.firms
    dpm = float(prep.config.params["days_per_month"])
    modes = f["customs_modes"].fillna("").astype(str)
    out: Arrays = {
        "firm_age_months": ((t - f["registration_date"]).dt.days / dpm).to_numpy(np.float64),
        "registered_capital_cny": f["registered_capital_cny"].to_numpy(np.float64),
    }
    count = np.zeros(len(f))
    for code in CUSTOMS_MODES:
        used = modes.str.contains(code, regex=False).to_numpy(np.float64)
        out[f"uses_{code}"] = used
        count += used
    out["customs_mode_count"] = count
    for col in ("own_brand", "independent_site", "high_tech", "provincial_leader"):
        out[col] = f[col].to_numpy(np.float64)
    return out


def _tax(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n = prep.n
    tax = prep.frames["tax"]
    vis = tax[tax["tax_year"].to_numpy() <= prep.config.last_tax_year(t.date())]
    fid = vis["fid"].to_numpy()
    last = np.r_[fid[1:] != fid[:-1], True] if len(fid) else np.zeros(0, bool)
    prev_same = np.r_[False, fid[1:] == fid[:-1]] if len(fid) else np.zeros(0, bool)
    latest = vis[last]
    lf = latest["fid"].to_numpy()
    out: Arrays = {}

    def put(values: np.ndarray) -> np.ndarray:
        arr = np.full(n, np.nan)
        arr[lf] = values
        return arr

    # previous row of each firm's latest one, used only when it is the year just before
    shifted = vis.shift(1)
    prev = shifted[last & prev_same]
    prev_fid = prev["fid"].to_numpy().astype(np.int64)
    consecutive = prev["tax_year"].to_numpy() == vis.loc[prev.index, "tax_year"].to_numpy() - 1
    prev_points = np.full(n, np.nan)
    prev_paid = np.full(n, np.nan)
    prev_points[prev_fid[consecutive]] = prev["points"].to_numpy(np.float64)[consecutive]
    prev_paid[prev_fid[consecutive]] = prev["tax_paid_cny"].to_numpy(np.float64)[consecutive]

    grade = np.full(n, None, dtype=object)
    grade[lf] = latest["tax_grade"].to_numpy(object)
    out["tax_grade"] = grade
    points = put(latest["points"].to_numpy(np.float64))
    out["tax_grade_change"] = points - prev_points
    paid = put(latest["tax_paid_cny"].to_numpy(np.float64))
    out["tax_paid_cny"] = paid
    out["tax_paid_growth"] = _growth(paid, prev_paid)
    out["export_rebate_cny"] = put(latest["export_rebate_cny"].to_numpy(np.float64))
    out["rebate_class"] = put(latest["rebate_class"].to_numpy(np.float64))
    out["tax_arrears_cny"] = put(latest["arrears_cny"].to_numpy(np.float64))
    years = _count(fid, n)
    out["tax_years_on_record"] = np.where(years > 0, years, np.nan)
    return out


def _latest_in_window(frame: pd.DataFrame, mask: np.ndarray, n: int, col: str) -> np.ndarray:
    """Value of ``col`` in each firm's latest row among ``mask`` (NaN when none)."""
    sub = frame[mask]
    fid = sub["fid"].to_numpy()
    last = np.r_[fid[1:] != fid[:-1], True] if len(fid) else np.zeros(0, bool)
    out = np.full(n, np.nan)
    out[fid[last]] = sub[col].to_numpy(np.float64)[last]
    return out


def _social_insurance(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, si = prep.n, prep.frames["social_insurance"]
    last = prep.config.last_month("social_insurance", t.date())
    m, fid = si["m"].to_numpy(), si["fid"].to_numpy()
    vis = m <= last
    present = _count(fid[vis], n) > 0
    recent = _window(m, last, 3)
    hc = si["insured_headcount"].to_numpy(np.float64)
    head = np.nan_to_num(_latest_in_window(si, recent, n, "insured_headcount"))
    arrears = np.nan_to_num(_latest_in_window(si, recent, n, "arrears_cny"))
    year_ago = _window(m, last - 12, 3)
    w12 = _window(m, last, 12)
    c12, s12 = _count(fid[w12], n), _sum(fid[w12], hc[w12], n)
    ss12 = _sum(fid[w12], hc[w12] ** 2, n)
    mean = _ratio(s12, c12)
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.maximum(_ratio(ss12, c12) - mean**2, 0.0))
    arr = si["arrears_cny"].to_numpy(np.float64)
    return {
        "headcount": _where_present(head, present),
        "headcount_growth_12m": _where_present(
            _growth(_sum(fid[recent], hc[recent], n), _sum(fid[year_ago], hc[year_ago], n)),
            present,
        ),
        "headcount_volatility_12m": _where_present(_ratio(sd, mean), present),
        "si_arrears_cny": _where_present(arrears, present),
        "si_arrears_months_12m": _where_present(_count(fid[w12 & (arr > 0)], n), present),
    }


def _utilities(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, ut = prep.n, prep.frames["utilities"]
    last = prep.config.last_month("utilities", t.date())
    m, fid = ut["m"].to_numpy(), ut["fid"].to_numpy()
    present = _count(fid[m <= last], n) > 0
    w3, w12, ago = _window(m, last, 3), _window(m, last, 12), _window(m, last - 12, 3)
    kwh = ut["electricity_kwh"].to_numpy(np.float64)
    water = ut["water_m3"].to_numpy(np.float64)
    c3 = _count(fid[w3], n)
    late = ut["late_payment"].to_numpy(bool)
    kwh3 = _sum(fid[w3], kwh[w3], n)
    return {
        "electricity_kwh_3m": _where_present(np.nan_to_num(_ratio(kwh3, c3)), present),
        "electricity_trend_yoy": _where_present(
            _growth(kwh3, _sum(fid[ago], kwh[ago], n)), present
        ),
        "water_m3_3m": _where_present(
            np.nan_to_num(_ratio(_sum(fid[w3], water[w3], n), c3)), present
        ),
        "utility_late_payments_12m": _where_present(_count(fid[w12 & late], n), present),
    }


def _hhi(
    fid: np.ndarray, group: np.ndarray, value: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Herfindahl index of ``value`` over ``group`` per firm, and the number of positive groups."""
    if not len(fid):
        return np.full(n, np.nan), np.zeros(n)
    g = (
        pd.DataFrame({"fid": fid, "g": group, "v": value})
        .groupby(["fid", "g"], sort=False)["v"]
        .sum()
    )
    gf = g.index.get_level_values("fid").to_numpy()
    gv = g.to_numpy(np.float64)
    total = _sum(gf, gv, n)
    hhi = _ratio(_sum(gf, gv**2, n), total**2)
    return hhi, _count(gf[gv > 0], n)


def _customs(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    n, p = prep.n, prep.config.params
    fm, det = prep.frames["customs_declarations:fm"], prep.frames["customs_declarations"]
    last = prep.config.last_month("customs_declarations", t.date())
    m, fid = fm["m"].to_numpy(), fm["fid"].to_numpy()
    vis = m <= last
    present = _count(fid[vis], n) > 0
    dec = fm["declared"].to_numpy(np.float64)
    out: Arrays = {}
    sums = {}
    for k in (3, 6, 12):
        w = _window(m, last, k)
        sums[k] = _sum(fid[w], dec[w], n)
        out[f"exports_{k}m_usd"] = _where_present(sums[k], present)
    prior12 = _window(m, last - 12, 12)
    ago3 = _window(m, last - 12, 3)
    out["export_growth_12m"] = _where_present(
        _growth(sums[12], _sum(fid[prior12], dec[prior12], n)), present
    )
    out["export_trend_yoy_3m"] = _where_present(
        _growth(sums[3], _sum(fid[ago3], dec[ago3], n)), present
    )
    w12 = _window(m, last, 12)
    # empty months count as zero: mean and variance over all 12 months
    mean = sums[12] / 12.0
    var = np.maximum(_sum(fid[w12], dec[w12] ** 2, n) / 12.0 - mean**2, 0.0)
    out["export_volatility_12m"] = _where_present(_ratio(np.sqrt(var), mean), present)
    out["export_months_active_12m"] = _where_present(_count(fid[w12 & (dec > 0)], n), present)
    positive = vis & (dec > 0)
    last_export = _max(fid[positive], m[positive], n, np.nan)
    cap = float(p["recency_cap_months"])
    out["months_since_last_export"] = _where_present(
        np.minimum(np.where(np.isnan(last_export), cap, last - last_export), cap), present
    )
    out["returns_ratio_12m"] = _where_present(
        _ratio(_sum(fid[w12], fm["returned"].to_numpy(np.float64)[w12], n), sums[12]), present
    )
    out["inspection_anomalies_12m"] = _where_present(
        _sum(fid[w12], fm["anomalies"].to_numpy(np.float64)[w12], n), present
    )
    out["declarations_12m"] = _where_present(
        _sum(fid[w12], fm["declarations"].to_numpy(np.float64)[w12], n), present
    )
    # destinations and modes over the detail rows of the 12-month window
    dm = _window(det["m"].to_numpy(), last, 12)
    dfid = det["fid"].to_numpy()[dm]
    val = det["declared_value_usd"].to_numpy(np.float64)[dm]
    hhi, ndest = _hhi(dfid, det["dest_code"].to_numpy()[dm], val, n)
    out["destination_count_12m"] = _where_present(ndest, present)
    out["destination_hhi_12m"] = _where_present(hhi, present)
    risk = det["dest_risk"].to_numpy(np.float64)[dm]
    high = (risk >= float(p["high_risk_min_category"])).astype(np.float64)
    out["high_risk_destination_share"] = _where_present(
        _ratio(_sum(dfid, val * high, n), sums[12]), present
    )
    out["destination_risk_avg_12m"] = _where_present(
        _ratio(_sum(dfid, val * risk, n), sums[12]), present
    )
    mode = det["mode_code"].to_numpy()[dm]
    for i, code in enumerate(CUSTOMS_MODES):
        sel = mode == i
        out[f"share_{code}_12m"] = _where_present(
            _ratio(_sum(dfid[sel], val[sel], n), sums[12]), present
        )
    shared["customs_present"] = present
    shared["exports_3m_usd"] = out["exports_3m_usd"]
    shared["exports_12m_usd"] = out["exports_12m_usd"]
    return out


def _customs_credit(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, cc = prep.n, prep.frames["customs_credit"]
    vis = cc[(cc["avail"] <= t).to_numpy()]
    fid = vis["fid"].to_numpy()
    last = np.r_[fid[1:] != fid[:-1], True] if len(fid) else np.zeros(0, bool)
    cat = np.full(n, None, dtype=object)
    cat[fid[last]] = vis["category"].to_numpy(object)[last]
    recent = (vis["effective_date"] > t - pd.DateOffset(months=24)).to_numpy()
    down = vis["downgrade"].to_numpy(bool)
    return {
        "customs_credit": cat,
        "customs_credit_downgrades_24m": _count(fid[recent & down], n),
    }


def _fx(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    n, fm = prep.n, prep.frames["fx_receipts:fm"]
    cfg = prep.config
    last = cfg.last_month("fx_receipts", t.date())
    m, fid = fm["m"].to_numpy(), fm["fid"].to_numpy()
    vis = m <= last
    present = _count(fid[vis], n) > 0
    rec = fm["received"].to_numpy(np.float64)
    w12 = _window(m, last, 12)
    fx12 = _sum(fid[w12], rec[w12], n)
    # receipts vs declarations over the months visible in both sources
    common = min(last, cfg.last_month("customs_declarations", t.date()))
    cfm = prep.frames["customs_declarations:fm"]
    cm, cfid, dec = cfm["m"].to_numpy(), cfm["fid"].to_numpy(), cfm["declared"].to_numpy(np.float64)
    both = present & shared["customs_present"]
    ratios = {}
    for k in (3, 12):
        wf, wc = _window(m, common, k), _window(cm, common, k)
        ratios[k] = _where_present(
            _ratio(_sum(fid[wf], rec[wf], n), _sum(cfid[wc], dec[wc], n)), both
        )
    cls_rank = _latest_in_window(fm, vis, n, "cls_rank")
    order = list(cfg.params["fx_class_order"])
    cls = np.full(n, None, dtype=object)
    known = ~np.isnan(cls_rank) & (np.nan_to_num(cls_rank, nan=-1) >= 0)
    cls[known] = np.asarray(order, dtype=object)[cls_rank[known].astype(int)]
    return {
        "fx_received_12m_usd": _where_present(fx12, present),
        "fx_receipt_ratio_12m": ratios[12],
        "fx_receipt_ratio_3m": ratios[3],
        "fx_receipt_ratio_trend": ratios[3] - ratios[12],
        "fx_class": cls,
        "fx_payment_institution_share_12m": _where_present(
            _ratio(_sum(fid[w12], fm["pi"].to_numpy(np.float64)[w12], n), fx12), present
        ),
    }


def _marketplace(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    n, fm, det = prep.n, prep.frames["marketplace_stores:fm"], prep.frames["marketplace_stores"]
    last = prep.config.last_month("marketplace_stores", t.date())
    m, fid = fm["m"].to_numpy(), fm["fid"].to_numpy()
    vis = m <= last
    present = _count(fid[vis], n) > 0
    col = {c: fm[c].to_numpy(np.float64) for c in fm.columns if c not in ("fid", "m")}
    out: Arrays = {}
    gmv = {}
    for k in (3, 6, 12):
        w = _window(m, last, k)
        gmv[k] = _sum(fid[w], col["gmv"][w], n)
        out[f"gmv_{k}m_usd"] = _where_present(gmv[k], present)
    prior6 = _window(m, last - 6, 6)
    out["gmv_growth_6m"] = _where_present(
        _growth(gmv[6], _sum(fid[prior6], col["gmv"][prior6], n)), present
    )
    w6, w3, now = _window(m, last, 6), _window(m, last, 3), m == last
    orders6 = _sum(fid[w6], col["orders"][w6], n)
    out["orders_6m"] = _where_present(orders6, present)
    out["store_count"] = _where_present(_sum(fid[now], col["stores"][now], n), present)
    out["stores_active"] = _where_present(_sum(fid[now], col["active"][now], n), present)
    out["stores_suspended"] = _where_present(_sum(fid[now], col["suspended"][now], n), present)
    out["stores_warning"] = _where_present(_sum(fid[now], col["warning"][now], n), present)
    dm = det["m"].to_numpy()
    d12 = _window(dm, last, 12) & (det["suspended"].to_numpy() > 0)
    susp = det.loc[d12, ["fid", "store_code"]].drop_duplicates()
    out["suspensions_12m"] = _where_present(_count(susp["fid"].to_numpy(), n), present)
    d6 = _window(dm, last, 6)
    hhi, nmkt = _hhi(
        det["fid"].to_numpy()[d6],
        det["mkt_code"].to_numpy()[d6],
        det["gmv_usd"].to_numpy(np.float64)[d6],
        n,
    )
    out["marketplace_count_6m"] = _where_present(nmkt, present)
    out["marketplace_hhi_6m"] = _where_present(hhi, present)
    out["refund_rate_6m"] = _where_present(
        _ratio(_sum(fid[w6], col["refunded"][w6], n), orders6), present
    )
    out["store_rating"] = _where_present(
        _ratio(
            _sum(fid[w3], np.nan_to_num(col["rating_sum"][w3]), n),
            _sum(fid[w3], col["rated"][w3], n),
        ),
        present,
    )
    hold_now = _sum(fid[now], col["hold"][now], n)
    out["payout_hold_usd"] = _where_present(hold_now, present)
    hold3 = _sum(fid[w3], col["hold"][w3], n)
    ratio = _ratio(hold3, gmv[3])
    cap = float(prep.config.params["payout_hold_ratio_cap"])
    ratio = np.where((gmv[3] <= 0) & (hold3 > 0), cap, np.where(hold3 <= 0, 0.0, ratio))
    out["payout_hold_ratio_3m"] = _where_present(np.minimum(ratio, cap), present)
    first = _min(fid[vis], m[vis], n, np.nan)
    out["store_age_months"] = _where_present(last - first + 1, present)
    shared["gmv_3m_usd"] = out["gmv_3m_usd"]
    return out


def _warehouse(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    n, fm, p = prep.n, prep.frames["overseas_warehouses:fm"], prep.config.params
    last = prep.config.last_month("overseas_warehouses", t.date())
    m, fid = fm["m"].to_numpy(), fm["fid"].to_numpy()
    present = _count(fid[m <= last], n) > 0
    stock = fm["stock"].to_numpy(np.float64)
    now, ago = m == last, m == last - 6
    stock_now = _sum(fid[now], stock[now], n)
    sales = np.where(shared["gmv_3m_usd"] > 0, shared["gmv_3m_usd"], shared["exports_3m_usd"])
    daily = sales / (3.0 * float(p["days_per_month"]))
    cover_cap = float(p["stock_cover_cap_days"])
    cover = np.where(
        stock_now <= 0,
        0.0,
        np.where(np.nan_to_num(daily) > 0, _ratio(stock_now, daily), cover_cap),
    )
    return {
        "overseas_stock_usd": _where_present(stock_now, present),
        "stock_cover_days": _where_present(np.minimum(cover, cover_cap), present),
        "warehouse_countries": _where_present(
            _sum(fid[now], fm["countries"].to_numpy(np.float64)[now], n), present
        ),
        "stock_growth_6m": _where_present(
            _growth(stock_now, _sum(fid[ago], stock[ago], n)), present
        ),
    }


def _loans(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    n, p, cfg = prep.n, prep.config.params, prep.config
    dpm, cap = float(p["days_per_month"]), float(p["recency_cap_months"])
    loans = prep.frames["loans"]
    lvis = loans[(loans["avail"] <= t).to_numpy()]
    lfid = lvis["fid"].to_numpy()
    fm = prep.frames["loan_repayments:fm"]
    last = cfg.last_month("loan_repayments", t.date())
    m, fid = fm["m"].to_numpy(), fm["fid"].to_numpy()
    vis = m <= last
    present = (_count(fid[vis], n) > 0) | (_count(lfid, n) > 0)
    now, w12 = m == last, _window(m, last, 12)
    outstanding = _sum(fid[now], fm["outstanding"].to_numpy(np.float64)[now], n)
    dpd = fm["dpd"].to_numpy(np.float64)
    exports_cny = shared["exports_12m_usd"] * float(p["usd_cny"])
    l2e_cap = float(p["loans_to_exports_cap"])
    l2e = np.where(
        outstanding <= 0,
        0.0,
        np.where(np.nan_to_num(exports_cny) > 0, _ratio(outstanding, exports_cny), l2e_cap),
    )
    l2e = np.where(np.isnan(exports_cny), np.nan, np.minimum(l2e, l2e_cap))
    late30 = vis & (dpd >= 30)
    last30 = _max(fid[late30], m[late30], n, np.nan)
    # A cure: a month end at 30-89 days past due followed, the next month, by none.
    prev_same = np.r_[False, (fid[1:] == fid[:-1]) & (m[1:] == m[:-1] + 1)]
    prev_dpd = np.r_[0.0, dpd[:-1]]
    cured = vis & prev_same & (prev_dpd >= 30) & (prev_dpd < 90) & (dpd == 0)
    w24 = _window(m, last, 24)
    restructured = fm["restructured"].to_numpy(np.float64)
    recent_start = (lvis["start_date"] > t - pd.DateOffset(months=12)).to_numpy()
    first_start = _min(
        lfid, lvis["start_date"].to_numpy().astype("datetime64[ns]").astype(np.int64), n, np.nan
    )
    history = np.full(n, np.nan)
    has = ~np.isnan(first_start)
    history[has] = (t.value - first_start[has]) / (86_400e9 * dpm)
    return {
        "loans_outstanding_cny": _where_present(outstanding, present),
        "loans_to_exports": _where_present(l2e, present),
        "active_loans": _where_present(
            _sum(fid[now], fm["active"].to_numpy(np.float64)[now], n), present
        ),
        "new_loans_12m": _where_present(_count(lfid[recent_start], n), present),
        "max_dpd_12m": _where_present(np.nan_to_num(_max(fid[w12], dpd[w12], n, 0.0)), present),
        "current_dpd": _where_present(_max(fid[now], dpd[now], n, 0.0), present),
        "dpd30_months_12m": _where_present(_count(fid[w12 & (dpd >= 30)], n), present),
        "dpd1_months_12m": _where_present(_count(fid[w12 & (dpd >= 1)], n), present),
        "months_since_dpd30": _where_present(
            np.minimum(np.where(np.isnan(last30), cap, last - last30), cap), present
        ),
        "repayment_ratio_12m": _where_present(
            _ratio(
                _sum(fid[w12], fm["paid"].to_numpy(np.float64)[w12], n),
                _sum(fid[w12], fm["due"].to_numpy(np.float64)[w12], n),
            ),
            present,
        ),
        "loan_history_months": history,
        "cured_arrears_24m": _where_present(_count(fid[cured & w24], n), present),
        "restructured_24m": _where_present(
            _sum(fid[w24], (restructured[w24] > 0).astype(np.float64), n), present
        ),
    }


def _recency(t: pd.Timestamp, fid: np.ndarray, dates: pd.Series, n: int, p: dict) -> np.ndarray:
    """Months since each firm's latest date, capped (cap when none)."""
    cap, dpm = float(p["recency_cap_months"]), float(p["days_per_month"])
    latest = _max(fid, dates.to_numpy().astype("datetime64[ns]").astype(np.int64), n, np.nan)
    months = np.full(n, cap)
    has = ~np.isnan(latest)
    months[has] = np.floor((t.value - latest[has]) / (86_400e9 * dpm))
    return np.minimum(months, cap)


def _courts(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, cr = prep.n, prep.frames["court_records"]
    vis = cr[(cr["avail"] <= t).to_numpy()]
    fid = vis["fid"].to_numpy()
    kind = vis["record_type"].to_numpy(object)
    amount = vis["amount_cny"].to_numpy(np.float64)
    closed = (vis["close_avail"] <= t).to_numpy()  # NaT compares False: still open
    recent = (vis["open_date"] > t - pd.DateOffset(months=24)).to_numpy()
    judg = (kind == "judgment") & recent
    enf = (kind == "enforcement") & ~closed
    dis = (kind == "dishonest_debtor") & ~closed
    return {
        "judgments_24m": _count(fid[judg], n),
        "judgment_amount_24m_cny": _sum(fid[judg], amount[judg], n),
        "enforcement_open": _count(fid[enf], n),
        "enforcement_amount_open_cny": _sum(fid[enf], amount[enf], n),
        "dishonest_listed": (_count(fid[dis], n) > 0).astype(np.float64),
        "court_records_total": _count(fid, n),
        "months_since_court_record": _recency(t, fid, vis["open_date"], n, prep.config.params),
    }


def _penalties(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, pen = prep.n, prep.frames["admin_penalties"]
    vis = pen[(pen["avail"] <= t).to_numpy()]
    fid = vis["fid"].to_numpy()
    recent = (vis["penalty_date"] > t - pd.DateOffset(months=24)).to_numpy()
    reason = vis["reason"].to_numpy(object)
    out: Arrays = {
        "penalties_24m": _count(fid[recent], n),
        "penalty_amount_24m_cny": _sum(
            fid[recent], vis["amount_cny"].to_numpy(np.float64)[recent], n
        ),
    }
    for key in ("product_quality", "ip_infringement", "customs", "tax"):
        sel = recent & (reason == key)
        out[f"penalties_{key}_24m"] = _count(fid[sel], n)
    out["months_since_penalty"] = _recency(t, fid, vis["penalty_date"], n, prep.config.params)
    return out


def _insurance(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, ins = prep.n, prep.frames["insurance_policies"]
    vis = ins[(ins["avail"] <= t).to_numpy()]
    fid = vis["fid"].to_numpy()
    force = (vis["end_date"] > t).to_numpy()
    settled = (vis["settled"] <= t).to_numpy()
    recent = settled & (vis["end_date"] > t - pd.DateOffset(months=24)).to_numpy()
    claims = vis["claims_paid_usd"].to_numpy(np.float64)
    turnover = vis["insured_turnover_usd"].to_numpy(np.float64)
    return {
        "insured": (_count(fid[force], n) > 0).astype(np.float64),
        "insured_turnover_usd": _sum(fid[force], turnover[force], n),
        "buyer_limit_usd": _sum(fid[force], vis["buyer_limit_usd"].to_numpy(np.float64)[force], n),
        "insurance_years": _count(fid, n),
        "claims_paid_24m_usd": _sum(fid[recent], claims[recent], n),
        "claims_ratio": _ratio(
            _sum(fid[settled], claims[settled], n), _sum(fid[settled], turnover[settled], n)
        ),
    }


def _buyers(prep: Prepared, t: pd.Timestamp, shared: Arrays) -> Arrays:
    """Concentration on named buyers and how those buyers paid this firm."""
    n, cfg = prep.n, prep.config
    det = prep.frames["customs_declarations"]
    last_c = cfg.last_month("customs_declarations", t.date())
    dm = _window(det["m"].to_numpy(), last_c, 12) & (det["buyer"].to_numpy() >= 0)
    dfid, dbuy = det["fid"].to_numpy()[dm], det["buyer"].to_numpy()[dm]
    val = det["declared_value_usd"].to_numpy(np.float64)[dm]
    by = pd.DataFrame({"fid": dfid, "b": dbuy, "v": val}).groupby(["fid", "b"], sort=True)["v"]
    per = by.sum().reset_index()
    pf, pv = per["fid"].to_numpy(), per["v"].to_numpy(np.float64)
    total = _sum(pf, pv, n)
    present = shared["customs_present"]
    fx = prep.frames["fx_receipts:buyers"]
    last_f = cfg.last_month("fx_receipts", t.date())
    fm = fx["m"].to_numpy()
    w12, w6 = _window(fm, last_f, 12), _window(fm, last_f, 6)
    ffid = fx["fid"].to_numpy()
    late = fx.loc[w12 & fx["late"].to_numpy(bool), ["fid", "buyer"]].drop_duplicates()
    late_key = pd.MultiIndex.from_frame(late.rename(columns={"buyer": "b"}))
    flagged = pd.MultiIndex.from_frame(per[["fid", "b"]]).isin(late_key)
    expected = fx["expected_usd"].to_numpy(np.float64)
    received = fx["received_usd"].to_numpy(np.float64)
    exp6 = _sum(ffid[w6], expected[w6], n)
    short = np.where(exp6 > 0, 1.0 - _ratio(_sum(ffid[w6], received[w6], n), exp6), np.nan)
    return {
        "buyer_count_12m": _where_present(_count(pf[pv > 0], n), present),
        "top_buyer_share_12m": _where_present(_ratio(_max(pf, pv, n, 0.0), total), present),
        "late_buyer_sales_share_12m": _where_present(
            _ratio(_sum(pf[flagged], pv[flagged], n), total), present
        ),
        "buyer_receipt_shortfall_6m": np.clip(short, 0.0, 1.0),
    }


def _claims(prep: Prepared, t: pd.Timestamp) -> Arrays:
    n, cl = prep.n, prep.frames["insurance_claims"]
    vis = cl[(cl["avail"] <= t).to_numpy()]
    fid = vis["fid"].to_numpy()
    recent = (vis["notified_date"] > t - pd.DateOffset(months=24)).to_numpy()
    decided = (vis["decided"] <= t).to_numpy()  # NaT compares False: still pending
    return {
        "claims_notified_24m": _count(fid[recent], n),
        "claims_pending": _count(fid[~decided], n),
    }


def _macro(prep: Prepared, t: pd.Timestamp) -> Arrays:
    """Return the latest published macro indicators (the same for every firm) and the PMI change."""
    n, mi = prep.n, prep.frames["macro_indicators"]
    last = prep.config.last_month("macro_indicators", t.date())
    m = mi["m"].to_numpy()
    now, ago = mi[m == last], mi[m == last - 6]

    def value(frame: pd.DataFrame, col: str) -> float:
        return float(frame[col].iloc[-1]) if len(frame) else np.nan

    pmi = value(now, "export_orders_pmi")
    return {
        "macro_export_orders_pmi": np.full(n, pmi),
        "macro_pmi_change_6m": np.full(n, pmi - value(ago, "export_orders_pmi")),
        "macro_freight_cost_index": np.full(n, value(now, "freight_cost_index")),
        "macro_western_demand_index": np.full(n, value(now, "western_demand_index")),
    }


def compute_features(prep: Prepared, as_of: date) -> Arrays:
    """Every feature the builder knows, for every firm of ``prep``, at ``as_of``.

    Parameters
    ----------
    prep : Prepared
        Output of :func:`prepare`.
    as_of : datetime.date
        Snapshot date.

    Returns
    -------
    dict of str to numpy.ndarray
        Feature name → one value per firm (firm order of ``prep.firms``); category features
        are object arrays of labels (None = missing).
    """
    t = pd.Timestamp(as_of)
    shared: Arrays = {}
    out: Arrays = {}
    out.update(_firm(prep, t))
    out.update(_tax(prep, t))
    out.update(_social_insurance(prep, t))
    out.update(_utilities(prep, t))
    out.update(_customs(prep, t, shared))
    out.update(_customs_credit(prep, t))
    out.update(_fx(prep, t, shared))
    out.update(_marketplace(prep, t, shared))
    out.update(_warehouse(prep, t, shared))
    out.update(_loans(prep, t, shared))
    out.update(_courts(prep, t))
    out.update(_penalties(prep, t))
    out.update(_insurance(prep, t))
    out.update(_buyers(prep, t, shared))
    out.update(_claims(prep, t))
    out.update(_macro(prep, t))
    for col in ("industry", "district", "main_marketplace"):
        out[col] = prep.firms[col].to_numpy(object)
    return out


def live_mask(prep: Prepared, as_of: date) -> np.ndarray:
    """Firms registered before ``as_of`` and not deregistered before it."""
    t = pd.Timestamp(as_of)
    reg = prep.firms["registration_date"] + pd.Timedelta(days=prep.config.lag("firms"))
    dereg = prep.firms["deregistration_date"]
    return ((reg < t) & ~(dereg < t)).to_numpy()


__all__ = [
    "NEEDED_COLUMNS",
    "Prepared",
    "compute_features",
    "live_mask",
    "prepare",
]
