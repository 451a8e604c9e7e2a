"""The latent process of the simulated platform: firms, their health chain, defaults, oracle.

One :class:`World` holds one chunk of firms over the simulated months. Everything is a
numpy array over firms (and months); nothing loops over firms in Python.

The default process
-------------------
Each live firm sits in one of ``S`` health states (0 = strong ... S-1 = distressed). In month
``t`` a performing firm in state ``s`` misses a payment ("onset", 30 days past due at the
month end) with probability ``sigmoid(hazard_logit[s] + x_i + young(t) + wave_i(t) +
macro_i(t) + buyer_i(t))``. A firm at 30 days rolls to 60 the next month with probability
``roll_30_60`` (else it cures), at 60 to 90 with ``roll_60_90`` (else it cures, some by a
restructuring); 90 days past due is the default (court route: an enforcement or
dishonest-debtor record in that month). A cured firm goes back to the chain in
``cure_state``. Independently, a performing firm in a healthy state (``sudden.max_state`` or
better) defaults
without warning (fraud, loss of a key buyer, a platform ban) with a small monthly probability.
Otherwise it may deregister voluntarily, otherwise it moves one state down or up.
The firm effects ``x_i`` carry the nonlinear drivers (thin margin x high leverage, FX-receipt
shortfall x high-risk destinations, thresholds), ``wave_i`` the suspension shock, ``macro_i``
the systematic factor of :mod:`simulator.macro` (industry and destination-region loadings),
``buyer_i`` the loss of buyers that stopped paying (:mod:`simulator.buyers`).

Because the chain is Markov given what the simulator knows at the start of a month, the
oracle's 12-month PD is computed exactly by backward recursion over the next months (no
Monte Carlo) over (health state x days past due): future suspensions and buyer defaults are
not known in advance and so are not in it, and the factor enters as its AR(1) forecast from
the value known at the start of the month (so a shock year's defaults exceed the oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.tables import CUSTOMS_MODES, INDUSTRIES, MARKETPLACES
from simulator.buyers import Buyers
from simulator.macro import Macro, firm_loading, region_index

#: Sentinel month index for "never".
NEVER = 1_000_000
#: Months of extra hazard computed beyond the window for the oracle's look-ahead.
HORIZON = 12
#: Maximum stores, customs modes and destinations per firm.
MAX_STORES = 4
MAX_MODES = 2
MAX_DEST = 3


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function.

    Parameters
    ----------
    x : numpy.ndarray
        Log-odds.

    Returns
    -------
    numpy.ndarray
        Probabilities.
    """
    return 1.0 / (1.0 + np.exp(-x))


def _choice(
    rng: np.random.Generator, weights: dict[str, float] | list[float], n: int
) -> np.ndarray:
    """Draw ``n`` indices with the given (unnormalised) weights."""
    w = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _uniform_int(rng: np.random.Generator, bounds: list[int], size: Any) -> np.ndarray:
    """Integers uniformly in the inclusive range ``bounds``."""
    return rng.integers(bounds[0], bounds[1] + 1, size)


@dataclass
class Countries:
    """Destination countries with their OECD country-risk category."""

    iso3: np.ndarray
    crc: np.ndarray

    def index(self, codes: list[str]) -> np.ndarray:
        """Positions of ``codes`` in :attr:`iso3`."""
        pos = {c: i for i, c in enumerate(self.iso3.tolist())}
        return np.array([pos[c] for c in codes])


@dataclass
class World:
    """One chunk of simulated firms and their monthly latent process.

    Month index 0 is the first simulated month; arrays over months have ``n_months`` columns
    (``n_months + HORIZON`` for the hazard inputs the oracle looks ahead with).
    """

    cfg: dict[str, Any]
    countries: Countries
    first_firm: int
    n_months: int
    month0: int  # absolute month number (year * 12 + month - 1) of index 0
    usc: np.ndarray
    district: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    macro: Macro | None = None
    buyers: Buyers | None = None

    @property
    def buyer_pool(self) -> Buyers:
        """The buyers (attached by :func:`attach_world_state` before any table is written)."""
        if self.buyers is None:
            raise RuntimeError("the world has no buyers yet: call attach_world_state first")
        return self.buyers

    def __getattr__(self, name: str) -> np.ndarray:
        # Firm and month arrays live in ``arrays``; attribute access keeps the table code short.
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def n(self) -> int:
        """Number of firms in the chunk."""
        return len(self.usc)

    def calendar_month(self, t: np.ndarray | int) -> np.ndarray:
        """Calendar month 1-12 of month index ``t``."""
        return (np.asarray(t) + self.month0) % 12 + 1


def make_world(
    cfg: dict[str, Any],
    countries: Countries,
    rng: np.random.Generator,
    usc: np.ndarray,
    district: np.ndarray,
    first_firm: int,
    month0: int,
    n_months: int,
) -> World:
    """Draw the static firm attributes of one chunk.

    Parameters
    ----------
    cfg : dict
        The simulator configuration.
    countries : Countries
        Destination countries and their risk categories.
    rng : numpy.random.Generator
        The chunk's random stream.
    usc, district : numpy.ndarray
        The chunk's codes and district indices (drawn globally so codes are unique).
    first_firm : int
        Global index of the chunk's first firm (for identifiers).
    month0 : int
        Absolute month number of the first simulated month.
    n_months : int
        Number of simulated months.

    Returns
    -------
    World
        The chunk with static attributes; call :func:`run_chain` next.
    """
    n = len(usc)
    fc = cfg["firms"]
    a: dict[str, np.ndarray] = {}
    w = World(cfg, countries, first_firm, n_months, month0, usc, district, a)

    a["industry"] = _choice(rng, fc["industry_weights"], n)
    # Registration month: old firms spread over max_age_years before the start, new ones over
    # the window (not in its last month).
    old = rng.random(n) < fc["registered_before_start"]
    a["reg_m"] = np.where(
        old,
        -rng.integers(1, fc["max_age_years"] * 12 + 1, n),
        rng.integers(0, max(n_months - 1, 1), n),
    )
    a["reg_day"] = rng.integers(1, 29, n)
    z = rng.standard_normal((2, n))
    corr = fc["capital_exports_corr"]
    a["log_cap"] = fc["log_capital_mean"] + fc["log_capital_sd"] * z[0]
    a["z_cap"] = z[0]
    a["scale"] = np.exp(
        fc["log_exports_mean"] + fc["log_exports_sd"] * (corr * z[0] + np.sqrt(1 - corr**2) * z[1])
    )
    a["quality"] = rng.standard_normal(n)
    a["growth"] = np.clip(
        rng.normal(fc["growth_mean"], fc["growth_sd"], n), -fc["growth_clip"], fc["growth_clip"]
    )
    q = a["quality"]
    a["own_brand"] = rng.random(n) < sigmoid(
        np.log(fc["own_brand_base"] / (1 - fc["own_brand_base"])) + 0.5 * q
    )
    a["independent_site"] = rng.random(n) < fc["independent_site"] * (1 + a["own_brand"])
    a["high_tech"] = rng.random(n) < fc["high_tech"] * np.exp(0.5 * a["z_cap"] + 0.3 * q)
    a["provincial_leader"] = rng.random(n) < fc["provincial_leader"] * np.exp(0.8 * a["z_cap"])
    a["headcount0"] = np.exp(
        fc["headcount_log_mean"]
        + 0.5 * a["z_cap"]
        + fc["headcount_log_sd"] * 0.7 * rng.standard_normal(n)
    )

    _draw_modes(w, rng)
    _draw_stores(w, rng)
    _draw_destinations(w, rng)
    _draw_finance(w, rng)
    return w


def _draw_modes(w: World, rng: np.random.Generator) -> None:
    mc = w.cfg["modes"]
    n = w.n
    modes = np.full((n, MAX_MODES), -1)
    modes[:, 0] = _choice(rng, mc["primary_weights"], n)
    second = _choice(rng, mc["primary_weights"], n)
    has2 = (rng.random(n) < mc["second_mode_prob"]) & (second != modes[:, 0])
    modes[has2, 1] = second[has2]
    share = np.zeros((n, MAX_MODES))
    share[:, 0] = np.where(has2, mc["primary_share"], 1.0)
    share[has2, 1] = 1 - mc["primary_share"]
    b2c_idx = [CUSTOMS_MODES.index(m) for m in mc["b2c_modes"]]
    is_b2c = np.isin(modes, b2c_idx)
    w.arrays.update(
        modes=modes,
        mode_share=share,
        mode_is_b2c=is_b2c,
        b2c_frac=(share * is_b2c).sum(1),
        has_stores=np.asarray(is_b2c.any(1)),
    )


def _draw_stores(w: World, rng: np.random.Generator) -> None:
    sc = w.cfg["stores"]
    n = w.n
    count = _choice(rng, sc["count_weights"], n) + 1
    count = np.where(w.has_stores, count, 0)
    slot = np.arange(MAX_STORES)[None, :]
    present = slot < count[:, None]
    mp = _choice(rng, sc["marketplace_weights"], n * MAX_STORES).reshape(n, MAX_STORES)
    mp = np.where(present, mp, -1)
    raw = rng.gamma(1.0, 1.0, (n, MAX_STORES)) * np.where(slot == 0, sc["main_store_boost"], 1.0)
    raw = np.where(present, raw, 0.0)
    share = raw / np.maximum(raw.sum(1, keepdims=True), 1e-12)
    # The first store opens with the firm's trade, later ones some months apart.
    gaps = _uniform_int(rng, sc["store_open_gap_months"], (n, MAX_STORES))
    gaps[:, 0] = rng.integers(0, 4, n)
    open_m = w.reg_m[:, None] + np.cumsum(gaps, 1)
    # Main marketplace: where the firm sells most (by sales share over its marketplaces).
    by_mp = np.zeros((n, len(MARKETPLACES)))
    for k in range(MAX_STORES):
        np.add.at(
            by_mp, (np.arange(n)[present[:, k]], mp[present[:, k], k]), share[present[:, k], k]
        )
    main = np.where(count > 0, by_mp.argmax(1), -1)
    wave_mp = MARKETPLACES.index(w.cfg["wave"]["marketplace"])
    lo, hi = sc["order_value_usd"]
    w.arrays.update(
        store_mp=mp,
        store_share=share,
        store_open=open_m,
        store_present=present,
        main_mp=main,
        wave_conc=by_mp[:, wave_mp],
        order_value=rng.uniform(lo, hi, n),
    )


def _draw_destinations(w: World, rng: np.random.Generator) -> None:
    dc = w.cfg["destinations"]
    n = w.n
    count = _choice(rng, dc["count_weights"], n) + 1
    emerging = rng.random(n) < dc["emerging_tilt_prob"]
    main_names = list(dc["mainstream_weights"])
    em_names = list(dc["emerging_weights"])
    main_idx = w.countries.index(main_names)
    em_idx = w.countries.index(em_names)
    d_main = main_idx[_choice(rng, dc["mainstream_weights"], n * MAX_DEST).reshape(n, MAX_DEST)]
    d_em = em_idx[_choice(rng, dc["emerging_weights"], n * MAX_DEST).reshape(n, MAX_DEST)]
    # Emerging-tilt firms send their first two destinations to emerging markets.
    use_em = emerging[:, None] & (np.arange(MAX_DEST)[None, :] < 2)
    dest = np.where(use_em, d_em, d_main)
    slot = np.arange(MAX_DEST)[None, :]
    present = slot < count[:, None]
    # Duplicate destinations within a firm are dropped (the key is mode x destination).
    for k in range(1, MAX_DEST):
        dup = (dest[:, :k] == dest[:, k : k + 1]).any(1)
        present[:, k] &= ~dup
    raw = rng.gamma(1.5, 1.0, (n, MAX_DEST)) * np.where(slot == 0, 2.0, 1.0)
    raw = np.where(present, raw, 0.0)
    share = raw / raw.sum(1, keepdims=True)
    crc = w.countries.crc[dest]
    high = crc >= w.cfg["high_risk_crc"]
    w.arrays.update(
        dest=np.where(present, dest, -1),
        dest_share=share,
        dest_present=present,
        high_risk_share=(share * high).sum(1),
    )


def _draw_finance(w: World, rng: np.random.Generator) -> None:
    cfg = w.cfg
    n = w.n
    lc = cfg["loans"]
    fx = cfg["fx"]
    margin = rng.beta(cfg["margins"]["a"], cfg["margins"]["b"], n)
    has_loans = rng.random(n) < lc["share"]
    leverage = np.exp(rng.normal(lc["leverage_log_mean"], lc["leverage_log_sd"], n))
    shortfall = rng.beta(fx["shortfall_a"], fx["shortfall_b"], n) + fx[
        "high_risk_extra"
    ] * w.high_risk_share * rng.random(n)
    utilities_missing = rng.random(n) < cfg["operations"]["utilities_missing"]
    wc = cfg["warehouses"]
    has_wh = np.isin(w.modes, [CUSTOMS_MODES.index("9810")]).any(1) | (
        w.has_stores & (rng.random(n) < wc["b2c_share"])
    )
    ic = cfg["insurance"]
    insured = rng.random(n) < np.where(w.has_stores, ic["share_b2c"], ic["share_b2b"])
    w.arrays.update(
        margin=margin,
        has_loans=has_loans,
        leverage=leverage,
        fx_shortfall=np.clip(shortfall, 0, 0.95),
        utilities_missing=utilities_missing,
        has_wh=has_wh,
        insured=insured,
        first_loan_m=w.reg_m + _uniform_int(rng, lc["first_loan_delay_months"], n),
    )


def draw_wave(w: World, rng: np.random.Generator, wave_t: tuple[int, int]) -> None:
    """Draw the marketplace suspension wave: which stores are suspended, when, for how long.

    Parameters
    ----------
    w : World
        The chunk (static attributes drawn).
    rng : numpy.random.Generator
        The chunk's random stream.
    wave_t : tuple of int
        First and last month index of the wave (may lie outside the window).
    """
    wc = w.cfg["wave"]
    n = w.n
    wave_mp = MARKETPLACES.index(wc["marketplace"])
    on_mp = w.store_mp == wave_mp
    logit = (
        wc["base_logit"]
        + wc["concentration_effect"] * w.wave_conc[:, None]
        + wc["own_brand_effect"] * w.own_brand[:, None]
    )
    hit = on_mp & (rng.random((n, MAX_STORES)) < sigmoid(logit))
    month = rng.integers(wave_t[0], wave_t[1] + 1, (n, MAX_STORES))
    # Only a store already open (and a firm already registered) can be suspended.
    hit &= month >= w.store_open
    susp = np.where(hit, month, NEVER)
    reinstated = rng.random((n, MAX_STORES)) < wc["reinstated_prob"]
    back = susp + _uniform_int(rng, wc["reinstated_after_months"], (n, MAX_STORES))
    w.arrays["store_wave_susp"] = susp
    w.arrays["store_wave_back"] = np.where(hit & reinstated, back, NEVER)
    w.arrays["susp_m"] = susp.min(1)
    # Share of the firm's sales on the suspended stores: the concentration the hazard sees.
    w.arrays["susp_share"] = (w.store_share * hit).sum(1)


def firm_logit(w: World) -> np.ndarray:
    """Return the static part of each firm's monthly onset log-odds (nonlinear drivers included).

    Parameters
    ----------
    w : World
        The chunk.

    Returns
    -------
    numpy.ndarray
        One log-odds offset per firm.
    """
    hc = w.cfg["hazard"]
    ind = np.array([hc["industry"][k] for k in INDUSTRIES])[w.industry]
    mode = np.array([hc["mode"][k] for k in CUSTOMS_MODES])[w.modes[:, 0]]
    thin_lev = (w.margin < hc["thin_margin"]) & (w.leverage > hc["high_leverage"]) & w.has_loans
    fx_risk = (w.fx_shortfall > hc["fx_shortfall"]) & (w.high_risk_share > hc["fx_high_risk_share"])
    return (
        hc["quality"] * w.quality
        + hc["log_capital"] * w.z_cap
        + ind
        + mode
        + hc["own_brand"] * w.own_brand
        + hc["decline"] * (w.growth < hc["decline_growth"])
        + hc["margin_leverage"] * thin_lev
        + hc["high_risk_share"] * w.high_risk_share
        + hc["fx_dishonest_destination"] * fx_risk
    )


def _wave_decay(w: World, months: np.ndarray) -> np.ndarray:
    """Decaying effect of a firm's wave suspension in ``months`` (0 before or without one)."""
    hl = w.cfg["wave"]["effect_half_life_months"]
    since = months[None, :] - w.susp_m[:, None]
    decay = 0.5 ** ((np.maximum(since, 1) - 1) / hl)
    return np.where(since > 0, decay, 0.0) * w.susp_share[:, None]


def attach_world_state(w: World, macro: Macro, buyers: Buyers, rng: np.random.Generator) -> None:
    """Link the chunk to the world's factor path and buyer pool, and pick each firm's buyers.

    A firm selling in a B2B buyer mode (``buyers.modes``) has one buyer per destination slot,
    drawn from the buyers of that country with the buyers' ``pick_weight``; so several
    exporters, in any chunk, share a buyer. Sets ``buyer`` (firm x destination slot, -1 for
    none), ``buyer_share`` (share of the firm's exports going to that buyer), ``load``
    (loading on each macro region) and ``dest_region``.
    """
    w.macro, w.buyers = macro, buyers
    bc = w.cfg["buyers"]
    modes = [CUSTOMS_MODES.index(m) for m in bc["modes"]]
    w.arrays["mode_has_buyer"] = np.isin(w.modes, modes) & (w.modes >= 0)
    b2b = (w.mode_share * w.mode_has_buyer).sum(1)
    pools = buyers.by_country(len(w.countries.iso3))
    buyer = np.full(w.dest.shape, -1)
    u = rng.random(w.dest.shape)
    for d in range(w.dest.shape[1]):
        for c in np.unique(w.dest[:, d][w.dest[:, d] >= 0]):
            rows = np.nonzero((w.dest[:, d] == c) & (b2b > 0))[0]
            pool = pools[c]
            if not len(rows) or not len(pool):
                continue
            cum = np.cumsum(buyers.pick_weight[pool])
            pick = np.searchsorted(cum, u[rows, d] * cum[-1], side="right")
            buyer[rows, d] = pool[np.minimum(pick, len(pool) - 1)]
    w.arrays["buyer"] = buyer
    w.arrays["buyer_share"] = np.where(buyer >= 0, b2b[:, None] * w.dest_share, 0.0)
    region = region_index(w.cfg["macro"], w.countries.iso3[w.dest.clip(0)].reshape(-1))
    w.arrays["dest_region"] = np.where(w.dest >= 0, region.reshape(w.dest.shape), -1)
    w.arrays["load"] = firm_loading(w.cfg["macro"], w.industry, w.dest_region, w.dest_share)
    w.arrays["buyer_default_m"] = np.where(buyer >= 0, buyers.default_m[buyer.clip(0)], NEVER)


def firm_factor(w: World, region_state: np.ndarray) -> np.ndarray:
    """Each firm's macro exposure per month: its region loadings times the region states."""
    return (w.load @ region_state).astype(np.float32)


def buyer_effect(w: World, months: np.ndarray, before: np.ndarray | None = None) -> np.ndarray:
    """Hazard log-odds from buyers that stopped paying, per firm and month of ``months``.

    Parameters
    ----------
    w : World
        The chunk with its buyers attached.
    months : numpy.ndarray
        Month indices the effect is wanted for.
    before : numpy.ndarray, optional
        Per column, only buyer defaults before this month count (what is known then).
    """
    bc = w.cfg["buyers"]
    out = np.zeros((w.n, len(months)), np.float32)
    # Only firms with a buyer that defaults in the window carry an effect.
    rows = np.nonzero((w.buyer_default_m < NEVER).any(1))[0]
    for d in range(w.buyer.shape[1]):
        dm = w.buyer_default_m[rows, d][:, None]
        since = months[None, :] - dm
        decay = 0.5 ** ((np.maximum(since, 1) - 1) / bc["effect_half_life_months"])
        hit = since > 0
        if before is not None:
            hit &= dm < before[None, :]
        share = w.buyer_share[rows, d][:, None]
        out[rows] += (bc["firm_hazard_effect"] * share * decay * hit).astype(np.float32)
    return out


def hazard_inputs(w: World) -> None:
    """Precompute the month-varying hazard and transition inputs (window plus look-ahead).

    Sets ``base_logit`` (firm effects + youth threshold), ``wave_logit`` (the suspension
    effect, applied only once the suspension has happened), ``down_logit``/``wave_down``,
    ``up_prob``, ``factor`` (the firm's macro exposure in the window) and ``buyer_logit``.
    """
    hc = w.cfg["hazard"]
    hh = w.cfg["health"]
    wc = w.cfg["wave"]
    months = np.arange(w.n_months + HORIZON)
    age = months[None, :] - w.reg_m[:, None]
    decay = _wave_decay(w, months)
    w.arrays["base_logit"] = (
        firm_logit(w)[:, None] + hc["young"] * (age < hc["young_months"])
    ).astype(np.float32)
    w.arrays["wave_logit"] = (wc["hazard_effect"] * decay).astype(np.float32)
    moves = hh["quality_on_moves"] * w.quality + hh["growth_on_moves"] * w.growth
    w.arrays["down_logit"] = (hh["down_logit"] - moves).astype(np.float32)
    w.arrays["wave_down"] = (wc["downgrade_effect"] * decay).astype(np.float32)
    w.arrays["up_prob"] = sigmoid(hh["up_logit"] + moves).astype(np.float32)
    assert w.macro is not None
    w.arrays["factor"] = firm_factor(w, w.macro.region_state)
    w.arrays["buyer_logit"] = buyer_effect(w, np.arange(w.n_months))


def _stationary(p_dn: np.ndarray, p_up: np.ndarray, n_states: int) -> np.ndarray:
    """Stationary distribution of the birth-death health chain, one row per firm."""
    ratio = p_dn / p_up
    w = ratio[:, None] ** np.arange(n_states)[None, :]
    return w / w.sum(1, keepdims=True)


def sudden_prob(cfg: dict[str, Any]) -> float:
    """Monthly probability of a default without warning (from the configured share)."""
    sc = cfg["sudden"]
    share = sc["share_of_defaults"]
    return float(share / (1 - share) * sc["reference_monthly_default_rate"])


@dataclass
class _Chain:
    """Month-by-month state of the health and delinquency chain of one chunk."""

    cur: np.ndarray  # health state for the coming month
    dq: np.ndarray  # delinquency bucket at the last month end (0, 1 = 30, 2 = 60 dpd)
    default_m: np.ndarray
    exit_m: np.ndarray
    sudden: np.ndarray  # cause index + 1 of a default without warning, 0 otherwise


def _chain_month(w: World, ch: _Chain, t: int, u: np.ndarray, p: dict[str, Any]) -> tuple:
    """Advance the chain by month ``t``; returns (live, onset, cured, restructured) masks."""
    hh, dl = w.cfg["health"], w.cfg["delinquency"]
    S = hh["n_states"]
    mc = w.cfg["macro"]
    live = (w.reg_m <= t) & (ch.default_m == NEVER) & (ch.exit_m == NEVER)
    performing = live & (ch.dq == 0)
    h = sigmoid(
        p["a_s"][ch.cur]
        + w.base_logit[:, t]
        + w.wave_logit[:, t]
        + mc["hazard_loading"] * w.factor[:, t]
        + w.buyer_logit[:, t]
    )
    onset = performing & (u[0] < h)
    sudden = performing & ~onset & (ch.cur <= p["sudden_max"]) & (u[1] < p["sudden"])
    roll1 = live & (ch.dq == 1) & (u[3] < dl["roll_30_60"])
    roll2 = live & (ch.dq == 2) & (u[3] < dl["roll_60_90"])
    cured = live & (ch.dq > 0) & ~roll1 & ~roll2
    restructured = cured & (ch.dq == 2) & (u[4] < dl["restructure_share"])
    new_exit = performing & ~onset & ~sudden & (u[1] > 1 - hh["exit_prob"])
    ch.default_m[roll2 | sudden] = t
    ch.sudden[sudden] = p["cause"][sudden] + 1
    ch.exit_m[new_exit] = t
    ch.dq = np.select([onset, roll1, cured | roll2], [1, 2, 0], ch.dq).astype(np.int8)
    p_dn = sigmoid(w.down_logit + w.wave_down[:, t] + mc["downgrade_loading"] * w.factor[:, t])
    down = u[2] < p_dn
    up = u[2] > 1 - w.up_prob
    moved = np.clip(ch.cur + down - up, 0, S - 1)
    ch.cur = np.where(live & (ch.dq == 0), moved, ch.cur)
    ch.cur = np.where(cured, dl["cure_state"], ch.cur)
    return live, onset, cured, restructured


def _sudden_cause(w: World, rng: np.random.Generator) -> np.ndarray:
    """Cause a default without warning would have: only causes that apply to the firm."""
    causes = w.cfg["sudden"]["causes"]
    names = list(causes)
    wts = np.tile(np.array(list(causes.values()), float), (w.n, 1))
    applies = {"key_buyer_loss": (w.buyer >= 0).any(1), "platform_ban": w.has_stores}
    for k, name in enumerate(names):
        if name in applies:
            wts[:, k] *= applies[name]
    cum = wts.cumsum(1)
    return (rng.random(w.n)[:, None] * cum[:, -1:] > cum).sum(1).clip(0, len(names) - 1)


def run_chain(
    w: World, rng: np.random.Generator, on_month: Callable[[], object] | None = None
) -> None:
    """Simulate the health and delinquency chain month by month (vectorised over firms).

    Sets ``state`` (n x months, -1 when the firm is not live; S-1 while delinquent or after
    the final onset), ``chain_state``, ``dq`` (days-past-due bucket 0/1/2/3 at each month end,
    3 = 90+), ``restructured`` (month of a restructuring), ``onset_m`` (start of the
    delinquency that ended in default; the default month itself for a default without
    warning), ``default_m``, ``sudden`` (cause + 1 of a default without warning), ``exit_m``
    and ``dereg_m``. ``on_month`` is called after each simulated month (progress reporting).
    """
    hh = w.cfg["health"]
    S = hh["n_states"]
    n, M = w.n, w.n_months
    p_dn0 = sigmoid(w.down_logit)
    pi = _stationary(p_dn0, w.up_prob, S)
    cur = (rng.random(n)[:, None] > pi.cumsum(1)).sum(1).clip(0, S - 1)
    ch = _Chain(cur, np.zeros(n, np.int8), np.full(n, NEVER), np.full(n, NEVER), np.zeros(n, int))
    p = {
        "a_s": np.asarray(hh["hazard_logit"], np.float32),
        "sudden": sudden_prob(w.cfg),
        "sudden_max": w.cfg["sudden"]["max_state"],
        "cause": _sudden_cause(w, rng),
    }
    state = np.full((n, M), -1, np.int8)
    dq = np.zeros((n, M), np.int8)
    restructured = np.zeros((n, M), bool)
    for t in range(M):
        u = rng.random((5, n))
        before = ch.cur.copy()
        live, _, _, restr = _chain_month(w, ch, t, u, p)
        state[live, t] = before[live]
        dq[:, t] = np.where(ch.default_m == t, 3, ch.dq)
        restructured[:, t] = restr
        if on_month is not None:
            on_month()
    _finish_chain(w, rng, ch, state, dq, restructured)


def _finish_chain(
    w: World,
    rng: np.random.Generator,
    ch: _Chain,
    state: np.ndarray,
    dq: np.ndarray,
    restructured: np.ndarray,
) -> None:
    hh = w.cfg["health"]
    S = hh["n_states"]
    n, M = w.n, w.n_months
    t = np.arange(M)[None, :]
    default_m = ch.default_m
    credit = (default_m < NEVER) & (ch.sudden == 0)
    onset = np.where(credit, default_m - 2, default_m)
    chain_state = state.copy()
    # While delinquent and after the final onset the firm is distressed for what the data shows.
    after = (t >= onset[:, None]) & (t >= w.reg_m[:, None])
    state[after | ((dq > 0) & (state >= 0))] = S - 1
    # After the default the bucket keeps growing (the data shows 120, 150 ... days).
    dq = np.where(t >= default_m[:, None], 3, dq)
    dc = w.cfg["defaults"]
    dereg_after = rng.random(n) < dc["deregister_prob"]
    lag = _uniform_int(rng, dc["deregister_after_months"], n)
    dereg = np.where(dereg_after & (default_m < NEVER), default_m + lag, NEVER)
    dereg = np.where(ch.exit_m < NEVER, ch.exit_m, dereg)
    # Records stop at deregistration; the state of months after it is "not live".
    gone = t >= dereg[:, None]
    state[gone] = -1
    w.arrays.update(
        state=state,
        chain_state=chain_state,
        dq=dq,
        restructured=restructured,
        onset_m=onset,
        default_m=default_m,
        sudden=ch.sudden,
        exit_m=ch.exit_m,
        dereg_m=dereg,
    )


def oracle_pd(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the true 12-month PD at the start of each month for each live, undefaulted firm.

    ``pd_12m`` at month ``T`` is P(default month in ``T .. T+11`` | health state and
    days-past-due bucket at the start of ``T``), computed exactly by backward recursion over
    the chain; suspension and buyer-default effects count only once they happened (before
    ``T``), the macro factor as its forecast from the value known at the start of ``T``.

    Parameters
    ----------
    w : World
        The chunk after :func:`run_chain`.

    Returns
    -------
    firm : numpy.ndarray
        Firm position in the chunk of each row.
    month : numpy.ndarray
        Month index ``T`` of each row.
    pd : numpy.ndarray
        The 12-month PD.
    """
    hh, dl, mc = w.cfg["health"], w.cfg["delinquency"], w.cfg["macro"]
    assert w.macro is not None
    S = hh["n_states"]
    a_s = np.asarray(hh["hazard_logit"], np.float32)
    n, M = w.n, w.n_months
    T = np.arange(M)
    known = (w.susp_m[:, None] < T[None, :]).astype(np.float32)  # n x M
    stay = np.float32(1 - hh["exit_prob"])
    p_sud = np.float32(sudden_prob(w.cfg))
    r1, r2, c = dl["roll_30_60"], dl["roll_60_90"], dl["cure_state"]
    up = w.up_prob[:, None]
    c_s = np.exp(-a_s)  # sigmoid(a_s + x) = 1 / (1 + exp(-a_s) exp(-x)): one exp per firm-month
    v = np.zeros((S, n, M), np.float32)  # performing, by health state
    v1 = np.zeros((n, M), np.float32)  # at 30 days past due
    v2 = np.zeros((n, M), np.float32)  # at 60 days past due
    cont = np.empty_like(v)
    for k in range(11, -1, -1):
        t = T + k
        x = firm_factor(w, w.macro.known_forecast(k))
        buyer = buyer_effect(w, t, before=T)
        e = np.exp(
            -(w.base_logit[:, t] + known * w.wave_logit[:, t] + mc["hazard_loading"] * x + buyer)
        )
        p_dn = sigmoid(
            w.down_logit[:, None] + known * w.wave_down[:, t] + mc["downgrade_loading"] * x
        )
        keep = 1 - up - p_dn
        for s_ in range(S):
            np.multiply(v[s_], keep, out=cont[s_])
            cont[s_] += up * v[max(s_ - 1, 0)]
            cont[s_] += p_dn * v[min(s_ + 1, S - 1)]
        new1 = r1 * v2 + (1 - r1) * v[c]
        new2 = r2 + (1 - r2) * v[c]
        for s_ in range(S):
            h = 1 / (1 + c_s[s_] * e)
            ps = p_sud if s_ <= w.cfg["sudden"]["max_state"] else 0.0
            v[s_] = h * v1 + (1 - h) * (ps + (1 - ps) * stay * cont[s_])
        v1, v2 = new1, new2
    # Live at the start of T: registered before T, not deregistered before T, not defaulted.
    reg_before = w.reg_m[:, None] < T[None, :]
    not_gone = w.dereg_m[:, None] >= T[None, :]
    not_defaulted = w.default_m[:, None] >= T[None, :]
    rows = reg_before & not_gone & not_defaulted
    # The state during month T is the chain state drawn at the end of T-1, as is the bucket.
    prev_dq = np.concatenate([np.zeros((n, 1), np.int8), w.dq[:, :-1]], 1)
    st = w.chain_state.clip(0, S - 1)
    pd_all = np.take_along_axis(v, st[None, :, :].astype(np.intp), axis=0)[0]
    pd_all = np.select([prev_dq == 1, prev_dq == 2], [v1, v2], pd_all)
    firm, month = np.nonzero(rows)
    return firm, month, pd_all[firm, month].astype(np.float64)
