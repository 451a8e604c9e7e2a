"""Random firm rows over the features the product rules read (for matching/regulator tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.scale import default_scales

MASTER = default_scales()[1]
GRADES = MASTER.grades


def random_firms(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` firms with plausible, sometimes missing, feature values and model outputs."""
    rng = np.random.default_rng(seed)
    pd_ = np.exp(rng.uniform(np.log(0.0006), np.log(0.4), n))
    df = pd.DataFrame(
        {
            "usc_code": [f"F{i:05d}" for i in range(n)],
            "pd": pd_,
            "grade": MASTER.grade(pd_),
            "firm_age_months": rng.integers(1, 200, n),
            "exports_12m_usd": np.round(np.exp(rng.uniform(np.log(1e4), np.log(2e7), n))),
            "dishonest_listed": (rng.random(n) < 0.08).astype(int),
            "max_dpd_12m": rng.choice([0, 0, 0, 15, 45, 90], n),
            "current_dpd": rng.choice([0, 0, 0, 0, 30], n),
            "enforcement_open": rng.choice([0, 0, 0, 1, 2], n),
            "fx_receipt_ratio_12m": rng.uniform(0.3, 1.0, n),
            "tax_grade": rng.choice(["A", "B", "M", "C", "D", None], n),
            "customs_credit": rng.choice(["aeo", "general", "dishonest", None], n),
            "penalties_24m": rng.choice([0, 0, 0, 1, 3], n),
            "fx_class": rng.choice(["A", "A", "B", "C"], n),
            "store_age_months": rng.integers(0, 120, n).astype(float),
            "gmv_6m_usd": np.round(np.exp(rng.uniform(np.log(1e3), np.log(5e6), n))),
            "refund_rate_6m": rng.uniform(0, 0.12, n),
            "store_rating": rng.uniform(3.0, 5.0, n),
            "stores_suspended": rng.choice([0, 0, 0, 1], n),
            "overseas_stock_usd": rng.choice([0.0, 2e4, 8e4, 5e5], n),
            "stock_cover_days": rng.uniform(10, 400, n),
            "rebate_class": rng.choice([1, 2, 3, 4], n),
            "insured": rng.choice([0, 1], n),
        }
    )
    # Some firms have no store: platform fields missing.
    no_store = rng.random(n) < 0.15
    for col in ("store_age_months", "gmv_6m_usd", "refund_rate_6m", "store_rating"):
        df.loc[no_store, col] = np.nan
    df["supervision_class"] = [MASTER.supervision_class(g) for g in df["grade"]]
    df["score"] = 600.0
    return df
