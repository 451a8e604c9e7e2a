"""The latent process of the simulated platform: firms, their health chain, defaults, oracle.

One :class:`World` holds one chunk of firms over the simulated months. Everything is a
numpy array over firms (and months); nothing loops over firms in Python.

The default process
-------------------
Each live firm sits in one of ``S`` health states (0 = strong ... S-1 = distressed). In month
``t`` a firm in state ``s`` enters distress ("onset") with probability
``sigmoid(hazard_logit[s] + x_i + young(t) + wave_i(t))``; otherwise it may deregister
voluntarily, otherwise it moves one state down or up. Onset in month ``s`` means the firm stops
paying: days past due 30, 60, 90 at the ends of months ``s``, ``s+1``, ``s+2``, so the default
month is ``s + 2`` (court route: an enforcement or dishonest-debtor record in that month).
The firm effects ``x_i`` carry the nonlinear drivers (thin margin x high leverage, FX-receipt
shortfall x high-risk destinations, thresholds), ``wave_i`` the suspension shock.

Because the chain is Markov given what the simulator knows at the start of a month, the
oracle's 12-month PD is computed exactly by backward recursion over the next months (no
Monte Carlo): future suspensions are not known in advance and so are not in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.tables import CUSTOMS_MODES, INDUSTRIES, MARKETPLACES

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


def hazard_inputs(w: World) -> None:
    """Precompute the month-varying hazard and transition inputs (window plus look-ahead).

    Sets ``base_logit`` (firm effects + youth threshold), ``wave_logit`` (the suspension
    effect, applied only once the suspension has happened), ``down_logit``/``wave_down`` and
    ``up_prob``.
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


def _stationary(p_dn: np.ndarray, p_up: np.ndarray, n_states: int) -> np.ndarray:
    """Stationary distribution of the birth-death health chain, one row per firm."""
    ratio = p_dn / p_up
    w = ratio[:, None] ** np.arange(n_states)[None, :]
    return w / w.sum(1, keepdims=True)


def run_chain(
    w: World, rng: np.random.Generator, on_month: Callable[[], object] | None = None
) -> None:
    """Simulate the health chain month by month (vectorised over firms).

    Sets ``state`` (n x months, -1 when the firm is not live), ``onset_m``, ``default_m``,
    ``exit_m`` (voluntary deregistration) and ``dereg_m``. ``on_month`` is called after each
    simulated month (progress reporting).
    """
    hh = w.cfg["health"]
    S = hh["n_states"]
    a_s = np.asarray(hh["hazard_logit"], np.float32)
    n, M = w.n, w.n_months
    p_dn0 = sigmoid(w.down_logit)
    pi = _stationary(p_dn0, w.up_prob, S)
    cum = pi.cumsum(1)
    cur = (rng.random(n)[:, None] > cum).sum(1).clip(0, S - 1)
    state = np.full((n, M), -1, np.int8)
    onset = np.full(n, NEVER)
    exit_m = np.full(n, NEVER)
    for t in range(M):
        u = rng.random((3, n))
        live = (w.reg_m <= t) & (onset == NEVER) & (exit_m == NEVER)
        h = sigmoid(a_s[cur] + w.base_logit[:, t] + w.wave_logit[:, t])
        new_onset = live & (u[0] < h)
        new_exit = live & ~new_onset & (u[1] < hh["exit_prob"])
        onset[new_onset] = t
        exit_m[new_exit] = t
        state[live, t] = cur[live]
        p_dn = sigmoid(w.down_logit + w.wave_down[:, t])
        down = u[2] < p_dn
        up = u[2] > 1 - w.up_prob
        cur = np.where(live, np.clip(cur + down - up, 0, S - 1), cur)
        if on_month is not None:
            on_month()
    chain_state = state.copy()
    # After onset the firm is distressed for what the data shows.
    after = (np.arange(M)[None, :] >= onset[:, None]) & (np.arange(M)[None, :] >= w.reg_m[:, None])
    state[after] = S - 1
    default_m = np.where(onset < NEVER, onset + hh["onset_to_default_months"], NEVER)
    dc = w.cfg["defaults"]
    dereg_after = rng.random(n) < dc["deregister_prob"]
    lag = _uniform_int(rng, dc["deregister_after_months"], n)
    dereg = np.where(dereg_after & (default_m < NEVER), default_m + lag, NEVER)
    dereg = np.where(exit_m < NEVER, exit_m, dereg)
    # Records stop at deregistration; the state of months after it is "not live".
    gone = np.arange(M)[None, :] >= dereg[:, None]
    state[gone] = -1
    w.arrays.update(
        state=state,
        chain_state=chain_state,
        onset_m=onset,
        default_m=default_m,
        exit_m=exit_m,
        dereg_m=dereg,
    )


def oracle_pd(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the true 12-month PD at the start of each month for each live, undefaulted firm.

    ``pd_12m`` at month ``T`` is P(default month in ``T .. T+11`` | state at the start of
    ``T``), computed exactly by backward recursion over the health chain; suspension effects
    count only once the suspension has happened (before ``T``).

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
    hh = w.cfg["health"]
    S = hh["n_states"]
    steps = (
        12 - hh["onset_to_default_months"]
    )  # an onset in month T + steps - 1 defaults in month T + 11
    a_s = np.asarray(hh["hazard_logit"], np.float32)
    n, M = w.n, w.n_months
    T = np.arange(M)
    known = (w.susp_m[:, None] < T[None, :]).astype(np.float32)  # n x M
    stay = np.float32(1 - hh["exit_prob"])
    up = w.up_prob[:, None]
    # sigmoid(a_s + x) = 1 / (1 + exp(-a_s) * exp(-x)): one exp per firm-month, not per state.
    c_s = np.exp(-a_s)
    # States first, so each state's firm x month slab is contiguous.
    v = np.zeros((S, n, M), np.float32)
    cont = np.empty_like(v)
    for k in range(steps - 1, -1, -1):
        t = T + k
        e = np.exp(-(w.base_logit[:, t] + known * w.wave_logit[:, t]))
        p_dn = sigmoid(w.down_logit[:, None] + known * w.wave_down[:, t])
        keep = 1 - up - p_dn
        # Expected continuation value over the tridiagonal moves (up = towards state 0).
        for s_ in range(S):
            np.multiply(v[s_], keep, out=cont[s_])
            cont[s_] += up * v[max(s_ - 1, 0)]
            cont[s_] += p_dn * v[min(s_ + 1, S - 1)]
        for s_ in range(S):
            h = 1 / (1 + c_s[s_] * e)
            v[s_] = h + (1 - h) * stay * cont[s_]
    # Live at the start of T: registered before T, not deregistered before T, not defaulted.
    reg_before = w.reg_m[:, None] < T[None, :]
    not_gone = w.dereg_m[:, None] >= T[None, :]
    not_defaulted = w.default_m[:, None] >= T[None, :]
    rows = reg_before & not_gone & not_defaulted
    pending = w.onset_m[:, None] < T[None, :]  # onset already happened: default is certain
    st = np.where(pending, 0, w.chain_state).clip(0, S - 1)
    # The state during month T is the chain state drawn at the end of T-1.
    pd_all = np.take_along_axis(v, st[None, :, :].astype(np.intp), axis=0)[0]
    pd_all = np.where(pending, 1.0, pd_all)
    firm, month = np.nonzero(rows)
    return firm, month, pd_all[firm, month].astype(np.float64)
