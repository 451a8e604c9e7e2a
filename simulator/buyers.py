"""Overseas buyers: one pool per world, each with its own monthly payment process.

The pool is drawn once per world (its own random stream), so every chunk's exporters sell to
the same buyers and several exporters share a buyer. A buyer's payment state each month is one
of ``on_time`` (0), ``late`` (1), ``protracted`` default (2) or ``insolvent`` (3); the last two
are absorbing and the first month in either is the buyer's default. The monthly log-odds of
turning late, of a late buyer defaulting (protracted) and of insolvency rise with the OECD
country-risk category of the buyer's country, fall with its size, and load on the macro state
of its region (:mod:`simulator.macro`).

The buyer oracle (``ORACLE/buyer_pd``) is the exact 12-month default probability at the start
of each month given the buyer's state and the factor known then (backward recursion over the
two live states, the factor forecast as in :meth:`simulator.macro.Macro.known_forecast`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.tables import BUYER_SECTORS, BUYER_SIZES
from simulator.macro import Macro, region_index
from simulator.months import month_end, month_start

NEVER = 1_000_000
#: Payment states.
ON_TIME, LATE, PROTRACTED, INSOLVENT = 0, 1, 2, 3
KINDS = {PROTRACTED: "protracted", INSOLVENT: "insolvency"}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Buyers:
    """The buyer pool of a world and its payment paths.

    Attributes
    ----------
    ids, names, country, size, sector : numpy.ndarray
        Static attributes (``country`` is a position in the country list).
    crc, region : numpy.ndarray
        OECD category and macro region of the buyer's country.
    terms : numpy.ndarray
        Payment terms in months.
    pick_weight : numpy.ndarray
        How likely an exporter in the buyer's country sells to it (larger buyers more).
    state : numpy.ndarray
        Payment state per buyer and month (buyers x months).
    default_m : numpy.ndarray
        Default month index (``NEVER`` if none in the window).
    pay_frac, days : numpy.ndarray
        Share of what falls due that the buyer pays, and days beyond terms, per buyer-month.
    """

    ids: np.ndarray
    names: np.ndarray
    country: np.ndarray
    size: np.ndarray
    sector: np.ndarray
    crc: np.ndarray
    region: np.ndarray
    terms: np.ndarray
    pick_weight: np.ndarray
    state: np.ndarray
    default_m: np.ndarray
    pay_frac: np.ndarray
    days: np.ndarray

    @property
    def n(self) -> int:
        """Number of buyers."""
        return len(self.ids)

    def by_country(self, n_countries: int) -> list[np.ndarray]:
        """Buyer positions per country position."""
        return [np.nonzero(self.country == c)[0] for c in range(n_countries)]


def _pool_sizes(cfg: dict[str, Any], n_firms: int, weights: dict[str, float]) -> dict[str, int]:
    total = max(int(np.ceil(cfg["per_firm"] * n_firms)), len(weights))
    w = np.array(list(weights.values()), float)
    counts = np.maximum(np.round(w / w.sum() * total).astype(int), cfg["min_per_country"])
    return dict(zip(weights, counts.tolist(), strict=True))


def draw_buyers(
    cfg: dict[str, Any],
    countries: Any,
    macro: Macro,
    rng: np.random.Generator,
    n_firms: int,
    n_months: int,
) -> Buyers:
    """Draw the buyer pool and run each buyer's payment process over the window.

    Parameters
    ----------
    cfg : dict
        The whole simulator configuration (``buyers``, ``destinations``, ``macro``).
    countries : simulator.process.Countries
        Country list with OECD categories.
    macro : Macro
        The world's factor path.
    rng : numpy.random.Generator
        The world's buyer stream.
    n_firms : int
        Firms in the world (the pool grows with it).
    n_months : int
        Window length.

    Returns
    -------
    Buyers
    """
    bc = cfg["buyers"]
    dc = cfg["destinations"]
    weights: dict[str, float] = {}
    for c, w in [*dc["mainstream_weights"].items(), *dc["emerging_weights"].items()]:
        weights[c] = weights.get(c, 0.0) + float(w)
    sizes = _pool_sizes(bc, n_firms, weights)
    iso = np.concatenate([[c] * k for c, k in sizes.items()]).astype(object)
    n = len(iso)
    country = countries.index(iso.tolist())
    seq = np.concatenate([np.arange(k) for k in sizes.values()])
    ids = np.array([f"BY{c}{s:06d}" for c, s in zip(iso, seq, strict=True)], dtype=object)
    sw = np.array(list(bc["size_weights"].values()), float)
    size = rng.choice(len(BUYER_SIZES), n, p=sw / sw.sum())
    sec = np.array([bc["sector_weights"][s] for s in BUYER_SECTORS], float)
    sector = rng.choice(len(BUYER_SECTORS), n, p=sec / sec.sum())
    tw = np.array(bc["terms_weights"], float)
    terms = np.asarray(bc["terms_months"])[rng.choice(len(tw), n, p=tw / tw.sum())]
    nm = bc["names"]
    first = rng.integers(0, len(nm["first"]), n)
    second = rng.integers(0, len(nm["second"]), n)
    names = np.array(
        [
            f"{nm['first'][a]} {nm['second'][b]} {nm['suffix'].get(c, nm['default_suffix'])}"
            for a, b, c in zip(first, second, iso, strict=True)
        ],
        dtype=object,
    )
    crc = countries.crc[country]
    region = region_index(cfg["macro"], iso)
    pick = np.array([bc["size_pick_weight"][s] for s in BUYER_SIZES])[size]
    b = Buyers(ids, names, country, size, sector, crc, region, terms, pick, *_empty(n, n_months))
    _run_payments(b, bc["payment"], macro, rng, n_months)
    return b


def _empty(n: int, m: int) -> tuple[np.ndarray, ...]:
    return (
        np.zeros((n, m), np.int8),
        np.full(n, NEVER),
        np.ones((n, m)),
        np.zeros((n, m)),
    )


def _logits(b: Buyers, pc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the static late, protracted and insolvency log-odds of each buyer."""
    size = np.array([pc["size_effect"][s] for s in BUYER_SIZES])[b.size]
    risk = pc["crc_effect"] * b.crc + size
    return pc["late_logit"] + risk, pc["protracted_logit"] + risk, pc["insolvency_logit"] + risk


def _run_payments(
    b: Buyers, pc: dict[str, Any], macro: Macro, rng: np.random.Generator, n_months: int
) -> None:
    late0, prot0, ins0 = _logits(b, pc)
    load = pc["macro_loading"]
    cur = np.zeros(b.n, np.int8)
    for t in range(n_months):
        x = load * macro.region_state[b.region, t]
        u = rng.random((3, b.n))
        live = cur <= LATE
        insolvent = live & (u[0] < _sigmoid(ins0 + x))
        protracted = live & ~insolvent & (cur == LATE) & (u[1] < _sigmoid(prot0 + x))
        to_late = live & (cur == ON_TIME) & (u[2] < _sigmoid(late0 + x))
        cure = live & (cur == LATE) & ~protracted & (u[2] < pc["cure_prob"])
        cur = np.where(insolvent, INSOLVENT, cur)
        cur = np.where(protracted, PROTRACTED, cur)
        cur = np.where(to_late, LATE, np.where(cure, ON_TIME, cur)).astype(np.int8)
        b.state[:, t] = cur
    defaulted = b.state >= PROTRACTED
    b.default_m[:] = np.where(defaulted.any(1), defaulted.argmax(1), NEVER)
    lo, hi = pc["late_paid_share"]
    b.pay_frac[:] = np.select(
        [b.state == LATE, defaulted], [rng.uniform(lo, hi, b.state.shape), 0.0], 1.0
    )
    d_on, d_late = pc["on_time_days"], pc["late_days"]
    overdue = 30.0 * (np.arange(n_months)[None, :] - b.default_m[:, None] + 1)
    b.days[:] = np.select(
        [b.state == LATE, defaulted],
        [rng.uniform(d_late[0], d_late[1], b.state.shape), overdue],
        rng.uniform(d_on[0], d_on[1], b.state.shape),
    ).round(1)


def buyer_oracle(b: Buyers, pc: dict[str, Any], macro: Macro, month0: int) -> pd.DataFrame:
    """``ORACLE/buyer_pd``: each live buyer's 12-month default probability at each month start.

    Parameters
    ----------
    b : Buyers
        The pool after its payment process ran.
    pc : dict
        The ``buyers.payment`` configuration.
    macro : Macro
        The factor path (only its known part is used).
    month0 : int
        Absolute month number of the first month.

    Returns
    -------
    pandas.DataFrame
        ``buyer_id``, ``as_of`` (first of the month), ``pd_12m``.
    """
    late0, prot0, ins0 = _logits(b, pc)
    m = b.state.shape[1]
    v_on = np.zeros((b.n, m))
    v_late = np.zeros((b.n, m))
    for k in range(11, -1, -1):
        x = pc["macro_loading"] * macro.known_forecast(k)[b.region]
        p_ins, p_prot = _sigmoid(ins0[:, None] + x), _sigmoid(prot0[:, None] + x)
        p_late = _sigmoid(late0[:, None] + x)
        cure = pc["cure_prob"]
        new_on = p_ins + (1 - p_ins) * (p_late * v_late + (1 - p_late) * v_on)
        survive = (1 - p_ins) * (1 - p_prot)
        new_late = p_ins + (1 - p_ins) * p_prot + survive * (cure * v_on + (1 - cure) * v_late)
        v_on, v_late = new_on, new_late
    prev = np.concatenate([np.zeros((b.n, 1), np.int8), b.state[:, :-1]], 1)
    rows = prev <= LATE
    pd_all = np.where(prev == LATE, v_late, v_on)
    buyer, month = np.nonzero(rows)
    return pd.DataFrame(
        {
            "buyer_id": pd.Series(b.ids[buyer], dtype="str"),
            "as_of": pd.Series(month_start(month0 + month)).astype("datetime64[ns]"),
            "pd_12m": pd_all[buyer, month].astype(np.float64),
        }
    )


def buyers_table(b: Buyers, countries: Any) -> pd.DataFrame:
    """Build the ``buyers`` raw table."""
    return pd.DataFrame(
        {
            "buyer_id": pd.Series(b.ids, dtype="str"),
            "name": pd.Series(b.names, dtype="str"),
            "country_iso3": pd.Series(countries.iso3[b.country], dtype="str"),
            "size_band": pd.Series(np.array(BUYER_SIZES, dtype=object)[b.size], dtype="str"),
            "sector": pd.Series(np.array(BUYER_SECTORS, dtype=object)[b.sector], dtype="str"),
        }
    )


def default_frame(b: Buyers, month0: int) -> pd.DataFrame:
    """``ORACLE/buyer_defaults``: buyer, default date (month end) and kind."""
    idx = np.nonzero(b.default_m < NEVER)[0]
    kind = b.state[idx, b.default_m[idx]]
    return pd.DataFrame(
        {
            "buyer_id": pd.Series(b.ids[idx], dtype="str"),
            "default_date": pd.Series(month_end(month0 + b.default_m[idx])).astype(
                "datetime64[ns]"
            ),
            "kind": pd.Series([KINDS[int(k)] for k in kind], dtype="str"),
        }
    )
