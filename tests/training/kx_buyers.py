"""A small synthetic buyer world (tables in the buyers contract) for buyer-model tests.

Buyers have a latent risk and share a monthly cycle factor; in the months before a default a
buyer pays late and partly, then stops paying (protracted default) and, after a cure period,
pays again. Deterministic for a seed; small enough for unit tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COUNTRIES = ("USA", "DEU", "VNM", "BRA", "TUR")
SIZES = ("small", "medium", "large")
SECTORS = ("retail_chain", "wholesaler", "distributor")


def buyer_world(
    n_buyers: int = 160, seed: int = 3, start: str = "2019-01", months: int = 84
) -> dict[str, pd.DataFrame]:
    """Return ``buyers``, ``fx_receipts``, ``customs_declarations``, ``insurance_claims``, ``macro_indicators``."""
    rng = np.random.default_rng(seed)
    periods = pd.period_range(start, periods=months, freq="M").astype(str)
    ids = [f"BY{COUNTRIES[i % len(COUNTRIES)]}{i:06d}" for i in range(n_buyers)]
    buyers = pd.DataFrame(
        {
            "buyer_id": ids,
            "name": [f"Buyer {i}" for i in range(n_buyers)],
            "country_iso3": [b[2:5] for b in ids],
            "size_band": rng.choice(SIZES, n_buyers),
            "sector": rng.choice(SECTORS, n_buyers),
        }
    )
    cycle = np.convolve(rng.normal(0, 1, months + 5), np.ones(6) / 6, mode="valid")[:months]
    risk = rng.normal(0, 1, n_buyers)
    # Month the buyer joins the platform: most early, some late (thin history at the test dates).
    first = np.where(
        rng.random(n_buyers) < 0.75, rng.integers(0, 30, n_buyers), rng.integers(55, 80, n_buyers)
    )
    fx, cd = [], []
    for b, bid in enumerate(ids):
        exporters = [f"9144030{b:04d}X{k:06d}"[:18] for k in range(rng.integers(1, 5))]
        size = rng.lognormal(10, 0.6)
        defaulted_at, m = None, int(first[b])
        while m < months:
            hazard = 1 / (1 + np.exp(-(-6.3 + 1.2 * risk[b] + 0.8 * cycle[m])))
            if defaulted_at is None and rng.random() < hazard:
                defaulted_at = m + 4  # four months of deterioration, then non-payment
            for e in exporters:
                exp = size * rng.lognormal(0, 0.2)
                to_default = None if defaulted_at is None else defaulted_at - m
                if to_default is not None and to_default <= 0:
                    rec, dbt = 0.0, 30.0 * (1 - to_default)
                elif to_default is not None:
                    rec, dbt = exp * rng.uniform(0.5, 0.9), rng.uniform(25, 60)
                else:
                    # Riskier buyers pay a little later in normal times too (the signal).
                    rec, dbt = (
                        exp * rng.uniform(0.97, 1.0),
                        rng.uniform(0, 4) + 5 * max(risk[b] + 1, 0),
                    )
                fx.append((e, periods[m], "bank", rec, "A", bid, exp, min(dbt, 150.0)))
                cd.append(
                    (e, periods[m], "0110", bid[2:5], exp * rng.uniform(0.9, 1.1), 2, 0.0, 0, bid)
                )
            if defaulted_at is not None and m >= defaulted_at + 2:
                m += 12  # cure: the buyer comes back a year later, paying again
                defaulted_at = None
            else:
                m += 1
    fx_df = pd.DataFrame(
        fx,
        columns=[
            "usc_code",
            "period",
            "channel",
            "received_usd",
            "fx_class",
            "buyer_id",
            "expected_usd",
            "days_beyond_terms",
        ],
    )
    cd_df = pd.DataFrame(
        cd,
        columns=[
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
    )
    claims = pd.DataFrame(
        columns=[
            "claim_id",
            "policy_id",
            "usc_code",
            "buyer_id",
            "notified_date",
            "loss_usd",
            "paid_usd",
            "decision_date",
            "status",
        ]
    )
    macro = pd.DataFrame(
        {
            "period": periods,
            "export_orders_pmi": 50 - 2 * cycle,
            "western_demand_index": 100 - 5 * cycle,
            "freight_cost_index": 100 + 10 * cycle,
        }
    )
    return {
        "buyers": buyers,
        "fx_receipts": fx_df,
        "customs_declarations": cd_df,
        "insurance_claims": claims,
        "macro_indicators": macro,
    }
