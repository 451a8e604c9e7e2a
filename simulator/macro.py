"""The systematic monthly macro factor: an AR(1) index plus scripted, documented episodes.

One factor path is drawn per world (its own random stream, shared by every chunk), so all
firms move together. The state of region ``r`` in month ``t`` is

    m[r, t] = a[t] + sum_e w[e, r] * e[e, t]

where ``a`` is an AR(1) index (``rho``, innovation ``sigma``) and each episode ``e`` (the 2020
demand and logistics shock, the 2021 freight-cost squeeze, the 2022-23 Western demand
slowdown; ``simulator/config/simulator.yaml``) moves towards its ``level`` at the rate
``build`` while it runs (``e = build * e + (1 - build) * level``) and fades at ``rho`` after
its end. Positive values are bad times. A firm sees the mix of its destination
regions, scaled by its industry's loading (:func:`firm_factor`).

What the oracle knows: at the start of month ``T`` the factor up to ``T - 1``; it forecasts
``m[r, T + k] = rho ** (k + 1) * m[r, T - 1]`` (the AR(1) expectation), so an episode is a
surprise to it, as to any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.tables import TABLES


@dataclass
class Macro:
    """The drawn factor path of a world.

    Attributes
    ----------
    regions : list of str
        Region names (rows of :attr:`region_state`).
    global_state : numpy.ndarray
        ``a[t] + sum_e e[e, t]`` per month (the headline factor of ``ORACLE/macro``).
    region_state : numpy.ndarray
        ``m[r, t]``, regions x months.
    episodes : numpy.ndarray
        Episode components, episodes x months.
    episode_names : list of str
        Names, one per row of :attr:`episodes`.
    active : numpy.ndarray
        Name of the episode running in each month ("" when none).
    rho : float
        AR(1) coefficient (the oracle's forecast decay).
    """

    regions: list[str]
    global_state: np.ndarray
    region_state: np.ndarray
    episodes: np.ndarray
    episode_names: list[str]
    active: np.ndarray
    rho: float

    def known_forecast(self, steps: int) -> np.ndarray:
        """Forecast of the region states made at the start of each month.

        Parameters
        ----------
        steps : int
            Months ahead (0 = the month itself).

        Returns
        -------
        numpy.ndarray
            Regions x months: ``rho ** (steps + 1) * m[r, T - 1]`` (0 before the first month).
        """
        prev = np.concatenate([np.zeros((len(self.regions), 1)), self.region_state[:, :-1]], 1)
        return prev * self.rho ** (steps + 1)


def _month(value: str) -> int:
    return int(value[:4]) * 12 + int(value[5:7]) - 1


def draw_macro(cfg: dict[str, Any], rng: np.random.Generator, month0: int, n_months: int) -> Macro:
    """Draw the factor path of a world.

    Parameters
    ----------
    cfg : dict
        The ``macro`` section of the simulator configuration.
    rng : numpy.random.Generator
        The world's macro stream.
    month0 : int
        Absolute month number of the first simulated month.
    n_months : int
        Number of months.

    Returns
    -------
    Macro
    """
    rho, sigma = float(cfg["rho"]), float(cfg["sigma"])
    regions = list(cfg["region_loading"])
    burn = int(cfg["burn_in_months"])
    total = burn + n_months
    eps = rng.standard_normal(total)
    a = np.zeros(total)
    prev = rng.standard_normal() * sigma / np.sqrt(1 - rho**2)
    for t in range(total):
        prev = rho * prev + sigma * eps[t]
        a[t] = prev
    a = a[burn:]
    months = month0 + np.arange(n_months)
    names = [e["name"] for e in cfg["episodes"]]
    ep = np.zeros((len(names), n_months))
    active = np.full(n_months, "", dtype=object)
    weights = np.zeros((len(names), len(regions)))
    for k, e in enumerate(cfg["episodes"]):
        lo, hi = _month(e["start"]), _month(e["end"])
        # Episodes that began before the window are run from their start.
        span = np.arange(min(lo, month0), month0 + n_months)
        level = 0.0
        build = float(e.get("build", rho))
        for m in span:
            on = lo <= m <= hi
            level = build * level + (1 - build) * e["level"] if on else rho * level
            if m >= month0:
                ep[k, m - month0] = level
                if on:
                    active[m - month0] = e["name"]
        w = e.get("regions", {})
        weights[k] = [float(w.get(r, 1.0)) for r in regions]
    region_state = a[None, :] + weights.T @ ep
    del months
    return Macro(regions, a + ep.sum(0), region_state, ep, names, active, rho)


def region_index(cfg: dict[str, Any], iso3: np.ndarray) -> np.ndarray:
    """Region position of each country (the configured ``other`` region when unlisted)."""
    regions = list(cfg["region_loading"])
    of = {c: r for r, cs in cfg["region_countries"].items() for c in cs}
    return np.array([regions.index(of.get(str(c), cfg["other_region"])) for c in iso3], np.int64)


def firm_loading(
    cfg: dict[str, Any], industry: np.ndarray, dest_region: np.ndarray, dest_share: np.ndarray
) -> np.ndarray:
    """Each firm's loading on each region: industry loading x region loading x sales share.

    Parameters
    ----------
    cfg : dict
        The ``macro`` section.
    industry : numpy.ndarray
        Industry position per firm.
    dest_region : numpy.ndarray
        Region per firm and destination slot (-1 for an empty slot).
    dest_share : numpy.ndarray
        Sales share per firm and destination slot.

    Returns
    -------
    numpy.ndarray
        Firms x regions.
    """
    from features.tables import INDUSTRIES

    regions = list(cfg["region_loading"])
    ind = np.array([cfg["industry_loading"][k] for k in INDUSTRIES])[industry]
    reg = np.array([cfg["region_loading"][r] for r in regions])
    out = np.zeros((len(industry), len(regions)))
    for d in range(dest_region.shape[1]):
        ok = dest_region[:, d] >= 0
        np.add.at(out, (np.nonzero(ok)[0], dest_region[ok, d]), dest_share[ok, d])
    return out * reg[None, :] * ind[:, None]


def indicators(
    cfg: dict[str, Any], macro: Macro, rng: np.random.Generator, periods: np.ndarray
) -> pd.DataFrame:
    """Build the published monthly indicators (``macro_indicators``), noisy views of the factor.

    Parameters
    ----------
    cfg : dict
        The ``macro`` section.
    macro : Macro
        The factor path.
    rng : numpy.random.Generator
        Noise stream.
    periods : numpy.ndarray
        ``YYYY-MM`` label of each month.

    Returns
    -------
    pandas.DataFrame
        One row per month, columns of the ``macro_indicators`` spec.
    """
    out: dict[str, Any] = {"period": pd.Series(periods, dtype="str")}
    n = len(periods)
    for name, spec in cfg["indicators"].items():
        region = spec.get("region")
        x = (
            macro.global_state
            if region is None
            else macro.region_state[macro.regions.index(region)]
        )
        extra = np.zeros(n)
        for ep_name, effect in spec.get("episodes", {}).items():
            extra += effect * macro.episodes[macro.episode_names.index(ep_name)]
        noise = spec["noise_sd"] * rng.standard_normal(n)
        if spec["transform"] == "linear":
            value = spec["base"] + spec["factor"] * x + extra + noise
        else:
            value = spec["base"] * np.exp(spec["factor"] * x + extra + noise)
        col = TABLES["macro_indicators"].column(name)
        out[name] = np.round(np.clip(value, col.ge, col.le), 2)
    return pd.DataFrame(out)


def oracle_frame(macro: Macro, periods: np.ndarray) -> pd.DataFrame:
    """``ORACLE/macro``: period, the headline factor and the running episode (null if none)."""
    episode = pd.Series(macro.active, dtype="str").replace("", pd.NA).astype("str")
    return pd.DataFrame(
        {
            "period": pd.Series(periods, dtype="str"),
            "factor": macro.global_state.astype(np.float64),
            "episode": episode,
        }
    )
