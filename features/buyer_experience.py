"""Buyer payment experience as of a date: what every insured exporter's records say of a buyer.

Per buyer and as-of date ``T``, from the platform's customs declarations, FX receipts and
insurance claims, with the same point-in-time rules as firm features: a monthly row counts once
its month end plus the table's lag (``features/config/availability.yaml``) is on or before
``T``; a claim once ``notified_date`` plus its lag is, and its outcome (paid/declined) once
``decision_date`` plus ``decision_lag_days`` is (pending until then). Windows end at the last
visible month of each table. Parameters (windows, the late-payment line) live in
``features/config/buyer_experience.yaml``.

Features (one row per buyer with any visible history):

- ``exporters_12m`` -- distinct exporters that shipped to or were paid by the buyer;
- ``shipped_usd_12m`` -- declared exports to the buyer (the platform's exposure proxy);
- ``expected_usd_12m``, ``unpaid_share_12m``/``_3m`` -- share of what fell due that was not
  received;
- ``dbt_12m``/``_3m`` -- value-weighted days beyond terms; ``dbt_max_3m``;
- ``late_share_12m`` -- share of due value paid more than ``late_days`` beyond terms;
- ``months_history`` -- months since the buyer first appeared, ``months_active_12m``;
- ``claims_24m``, ``claims_paid_usd_24m``, ``claims_pending_24m``;
- the buyer's static ``country_iso3``, ``size_band``, ``sector``;
- the latest published macro indicators (the cycle every buyer shares).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.feature_availability import SnapshotConfig, month_index_of, period_to_month_index

CONFIG_PATH = Path(__file__).parent / "config" / "buyer_experience.yaml"
TABLES_USED = (
    "buyers",
    "customs_declarations",
    "fx_receipts",
    "insurance_claims",
    "macro_indicators",
)
NUMERIC_FEATURES = (
    "exporters_12m",
    "shipped_usd_12m",
    "expected_usd_12m",
    "unpaid_share_12m",
    "unpaid_share_3m",
    "dbt_12m",
    "dbt_3m",
    "dbt_max_3m",
    "late_share_12m",
    "months_history",
    "months_active_12m",
    "claims_24m",
    "claims_paid_usd_24m",
    "claims_pending_24m",
)
STATIC_COLUMNS = ("country_iso3", "size_band", "sector")


@lru_cache(maxsize=2)
def load_params(path: str | None = None) -> dict[str, Any]:
    """Windows and thresholds of the buyer features (validated for presence and sign)."""
    data = yaml.safe_load(Path(path or CONFIG_PATH).read_text(encoding="utf-8"))
    need = ("window_months", "short_window_months", "claims_window_months", "late_days", "macro")
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"{path or CONFIG_PATH}: missing {missing}")
    for k in need[:4]:
        if not data[k] > 0:
            raise ValueError(f"{path or CONFIG_PATH}: {k} must be > 0; got {data[k]}")
    return data


def _lag(config: SnapshotConfig, table: str, key: str = "lag_days", default: int = 0) -> int:
    return int(config.tables.get(table, {}).get(key, default))


def buyer_months(tables: Mapping[str, pd.DataFrame], late_days: float) -> pd.DataFrame:
    """Monthly buyer x exporter rows: due, received, days beyond terms, shipped.

    Returns
    -------
    DataFrame
        ``buyer_id``, ``usc_code``, ``month`` (index ``year * 12 + month - 1``), ``expected``,
        ``received``, ``dbt_value`` (expected x days beyond terms), ``late_value``,
        ``shipped``; only rows with a buyer.
    """
    fx = tables.get("fx_receipts", pd.DataFrame())
    fx = fx[fx["buyer_id"].notna()] if len(fx) else fx
    cd = tables.get("customs_declarations", pd.DataFrame())
    cd = cd[cd["buyer_id"].notna()] if len(cd) else cd
    parts = []
    if len(fx):
        exp = fx["expected_usd"].astype(float).fillna(0.0)
        dbt = fx["days_beyond_terms"].astype(float).fillna(0.0)
        parts.append(
            pd.DataFrame(
                {
                    "buyer_id": fx["buyer_id"].astype(str).to_numpy(),
                    "usc_code": fx["usc_code"].astype(str).to_numpy(),
                    "month": period_to_month_index(fx["period"].astype(str)),
                    "expected": exp.to_numpy(),
                    "received": fx["received_usd"].astype(float).fillna(0.0).to_numpy(),
                    "dbt_value": (exp * dbt).to_numpy(),
                    "late_value": (exp * (dbt > late_days)).to_numpy(),
                    "shipped": 0.0,
                    "table": "fx_receipts",
                }
            )
        )
    if len(cd):
        parts.append(
            pd.DataFrame(
                {
                    "buyer_id": cd["buyer_id"].astype(str).to_numpy(),
                    "usc_code": cd["usc_code"].astype(str).to_numpy(),
                    "month": period_to_month_index(cd["period"].astype(str)),
                    "expected": 0.0,
                    "received": 0.0,
                    "dbt_value": 0.0,
                    "late_value": 0.0,
                    "shipped": cd["declared_value_usd"].astype(float).fillna(0.0).to_numpy(),
                    "table": "customs_declarations",
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            columns=[
                "buyer_id",
                "usc_code",
                "month",
                "expected",
                "received",
                "dbt_value",
                "late_value",
                "shipped",
                "table",
            ]
        )
    return pd.concat(parts, ignore_index=True)


def _last_visible_month(as_of: date, lag_days: int) -> int:
    cutoff = as_of - timedelta(days=lag_days)
    index = month_index_of(cutoff)
    return index if (cutoff + timedelta(days=1)).day == 1 else index - 1


def _window(months: pd.DataFrame, table: str, as_of: date, lag: int, span: int) -> pd.DataFrame:
    last = _last_visible_month(as_of, lag)
    m = months[
        (months["table"] == table) & (months["month"] <= last) & (months["month"] > last - span)
    ]
    return m


def _payment_features(
    months: pd.DataFrame, as_of: date, cfg: SnapshotConfig, p: dict[str, Any]
) -> pd.DataFrame:
    lag_fx, lag_cd = _lag(cfg, "fx_receipts"), _lag(cfg, "customs_declarations")
    w, s = int(p["window_months"]), int(p["short_window_months"])
    fx12 = _window(months, "fx_receipts", as_of, lag_fx, w)
    fx3 = _window(months, "fx_receipts", as_of, lag_fx, s)
    cd12 = _window(months, "customs_declarations", as_of, lag_cd, w)
    g12, g3 = fx12.groupby("buyer_id"), fx3.groupby("buyer_id")
    exp12, exp3 = g12["expected"].sum(), g3["expected"].sum()
    out = pd.DataFrame(
        {
            "expected_usd_12m": exp12,
            "unpaid_share_12m": (1 - g12["received"].sum() / exp12.where(exp12 > 0)).clip(0, 1),
            "unpaid_share_3m": (1 - g3["received"].sum() / exp3.where(exp3 > 0)).clip(0, 1),
            "dbt_12m": g12["dbt_value"].sum() / exp12.where(exp12 > 0),
            "dbt_3m": g3["dbt_value"].sum() / exp3.where(exp3 > 0),
            "dbt_max_3m": (fx3["dbt_value"] / fx3["expected"].where(fx3["expected"] > 0))
            .groupby(fx3["buyer_id"])
            .max(),
            "late_share_12m": g12["late_value"].sum() / exp12.where(exp12 > 0),
            "months_active_12m": g12["month"].nunique(),
        }
    )
    both = pd.concat([fx12[["buyer_id", "usc_code"]], cd12[["buyer_id", "usc_code"]]])
    out = out.join(
        both.groupby("buyer_id")["usc_code"].nunique().rename("exporters_12m"), how="outer"
    )
    out = out.join(cd12.groupby("buyer_id")["shipped"].sum().rename("shipped_usd_12m"), how="outer")
    # History: months since the first visible row of either table.
    seen = pd.concat(
        [
            months[
                (months["table"] == "fx_receipts")
                & (months["month"] <= _last_visible_month(as_of, lag_fx))
            ],
            months[
                (months["table"] == "customs_declarations")
                & (months["month"] <= _last_visible_month(as_of, lag_cd))
            ],
        ]
    )
    last = max(_last_visible_month(as_of, lag_fx), _last_visible_month(as_of, lag_cd))
    first = seen.groupby("buyer_id")["month"].min()
    out = out.join((last - first + 1).rename("months_history"), how="outer")
    return out


def _claim_features(
    claims: pd.DataFrame, as_of: date, cfg: SnapshotConfig, p: dict[str, Any]
) -> pd.DataFrame:
    cols = ["claims_24m", "claims_paid_usd_24m", "claims_pending_24m"]
    if claims is None or not len(claims):
        return pd.DataFrame(columns=cols)
    t = pd.Timestamp(as_of)
    known = pd.to_datetime(claims["notified_date"]) + pd.Timedelta(
        days=_lag(cfg, "insurance_claims")
    )
    start = t - pd.DateOffset(months=int(p["claims_window_months"]))
    c = claims[(known <= t) & (pd.to_datetime(claims["notified_date"]) > start)]
    decided = pd.to_datetime(c["decision_date"]) + pd.Timedelta(
        days=_lag(cfg, "insurance_claims", "decision_lag_days")
    )
    outcome_known = decided.notna() & (decided <= t)
    paid = np.where(outcome_known & (c["status"] == "paid"), c["paid_usd"].astype(float), 0.0)
    g = pd.DataFrame(
        {"buyer_id": c["buyer_id"].astype(str), "paid": paid, "pending": ~outcome_known}
    )
    agg = g.groupby("buyer_id").agg(
        claims_24m=("paid", "size"),
        claims_paid_usd_24m=("paid", "sum"),
        claims_pending_24m=("pending", "sum"),
    )
    return agg


def _macro(
    macro: pd.DataFrame | None, as_of: date, cfg: SnapshotConfig, names: Sequence[str]
) -> dict[str, float]:
    if macro is None or not len(macro):
        return {f"macro_{n}": np.nan for n in names}
    last = _last_visible_month(as_of, _lag(cfg, "macro_indicators"))
    m = macro.assign(month=period_to_month_index(macro["period"].astype(str)))
    m = m[m["month"] <= last].sort_values("month")
    if not len(m):
        return {f"macro_{n}": np.nan for n in names}
    return {f"macro_{n}": float(m[n].iloc[-1]) for n in names}


def buyer_experience(
    tables: Mapping[str, pd.DataFrame],
    as_of: date,
    config: SnapshotConfig | None = None,
    params: dict[str, Any] | None = None,
    months: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Payment experience of every buyer with visible history at ``as_of``.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        ``buyers``, ``customs_declarations``, ``fx_receipts``, ``insurance_claims``,
        ``macro_indicators`` (clean tables; absent tables count as empty).
    as_of : date
    config : SnapshotConfig, optional
        Lags; the shipped ones when omitted.
    params : dict, optional
        ``features/config/buyer_experience.yaml`` when omitted.
    months : DataFrame, optional
        :func:`buyer_months` of the tables, when already computed (many as-of dates).

    Returns
    -------
    DataFrame
        One row per buyer: ``buyer_id``, ``as_of``, the static columns, the features.
    """
    cfg = config or SnapshotConfig.load()
    p = params or load_params()
    mon = months if months is not None else buyer_months(tables, float(p["late_days"]))
    feats = _payment_features(mon, as_of, cfg, p)
    feats = feats.join(_claim_features(tables.get("insurance_claims"), as_of, cfg, p), how="left")
    feats = feats[feats["months_history"].notna()]
    for c in (
        "claims_24m",
        "claims_paid_usd_24m",
        "claims_pending_24m",
        "exporters_12m",
        "shipped_usd_12m",
        "months_active_12m",
    ):
        feats[c] = feats[c].fillna(0.0).astype(float)
    buyers = tables.get("buyers")
    if buyers is not None and len(buyers):
        static = buyers.set_index("buyer_id")[list(STATIC_COLUMNS)].astype("string")
        feats = feats.join(static, how="left")
    else:
        feats = feats.assign(**{c: pd.NA for c in STATIC_COLUMNS})
    for k, v in _macro(tables.get("macro_indicators"), as_of, cfg, p["macro"]).items():
        feats[k] = v
    feats.index.name = "buyer_id"
    out = feats.reset_index()
    out.insert(1, "as_of", pd.Timestamp(as_of))
    return out[
        [
            "buyer_id",
            "as_of",
            *STATIC_COLUMNS,
            *NUMERIC_FEATURES,
            *[f"macro_{n}" for n in p["macro"]],
        ]
    ].sort_values("buyer_id", ignore_index=True)


def country_categories(path: str | Path | None = None) -> dict[str, str]:
    """ISO3 -> OECD country category (``"HI"`` for unclassified high income, else the digit).

    Reads the OECD table ``features`` ships (the one ``tradefinance.insurance`` prices with),
    with the same rule: a ``(6)`` note marks an unclassified high-income country; a country
    neither classified nor high income is left out.
    """
    import csv

    src = Path(path) if path else Path(__file__).parent / "config" / "oecd_country_risk_2026-01.csv"
    out: dict[str, str] = {}
    with src.open(encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            crc = (rec.get("crc_as_parsed") or "").strip()
            if "(6)" in (rec.get("notes") or ""):
                out[rec["iso3"].strip().upper()] = "HI"
            elif crc:
                out[rec["iso3"].strip().upper()] = crc
    return out
