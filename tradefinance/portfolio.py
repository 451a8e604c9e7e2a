"""An insurer's book: expected loss, the loss distribution, VaR, expected shortfall, concentration.

Model (DOMAIN.md §7.3; parameters in ``tradefinance/config/insurer.yaml``, ``portfolio``). Buyer
``b`` in country ``c`` defaults within the year when its asset value

    X_b = sqrt(rho) Z + sqrt(rho_country) Z_c + sqrt(1 - rho - rho_country) e_b

falls below ``Phi^-1(pd_b)``; ``Z`` is the systematic (global cycle) factor, ``Z_c`` a country
factor, ``e_b`` the buyer's own. A defaulted buyer costs the insurer its insured exposure (the
exporters' exposures on it, capped in aggregate at the buyer's credit limit) x cover x LGD.
Default is a buyer event: policies on the same buyer default together, which is why policies
are first aggregated to buyers (:func:`buyer_positions`).

The Monte Carlo is vectorised over blocks of scenarios (``block`` x buyers float32 draws at a
time, each block with its own child seed of ``seed``, so a run is reproducible and its memory
is bounded). With ``rho_country = 0`` the model is the single-factor (Vasicek) model, for which
:func:`vasicek_quantile` (large homogeneous portfolio) and :func:`single_factor_default_quantile`
(finite homogeneous portfolio, exact) give the analytic answer to compare with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tradefinance.insurer_config import PortfolioParams, load_insurer_config

_NORMAL = NormalDist()
POLICY_COLUMNS = ("buyer_id", "exposure_usd", "cover", "pd")
OPTIONAL_COLUMNS = {"country_iso3": "unknown", "sector": "unknown", "policy_id": None}


def buyer_positions(
    policies: pd.DataFrame,
    limits: Mapping[str, float] | None = None,
    lgd: float | None = None,
) -> pd.DataFrame:
    """Aggregate policies to one position per buyer, the insured exposure within its limit.

    Parameters
    ----------
    policies : DataFrame
        One row per policy x buyer: ``buyer_id``, ``exposure_usd`` (outstanding insured
        receivables), ``cover`` (indemnity share), ``pd`` (the buyer's 12-month PD), and
        optionally ``country_iso3``, ``sector``.
    limits : mapping buyer_id -> USD, optional
        The insurer's credit limit per buyer (aggregate over exporters). Exposure above it is
        uninsured: every policy on the buyer is scaled down pro rata.
    lgd : float, optional
        Loss given default on the insured amount; the configured one when omitted.

    Returns
    -------
    DataFrame
        Indexed by ``buyer_id``: ``country_iso3``, ``sector``, ``pd``, ``exposure_usd``,
        ``insured_usd``, ``loss_given_default_usd`` (insured x cover x lgd) and
        ``expected_loss_usd``.
    """
    missing = [c for c in POLICY_COLUMNS if c not in policies.columns]
    if missing:
        raise ValueError(f"policies must have columns {list(POLICY_COLUMNS)}; missing {missing}")
    df = policies.copy()
    for col, default in OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df[col] = default
    exp = pd.to_numeric(df["exposure_usd"], errors="coerce")
    pdv = pd.to_numeric(df["pd"], errors="coerce")
    cover = pd.to_numeric(df["cover"], errors="coerce")
    if exp.isna().any() or (exp < 0).any():
        raise ValueError("policies.exposure_usd must be numbers >= 0")
    if pdv.isna().any() or ((pdv <= 0) | (pdv >= 1)).any():
        raise ValueError("policies.pd must be in (0, 1)")
    if cover.isna().any() or ((cover <= 0) | (cover > 1)).any():
        raise ValueError("policies.cover must be in (0, 1]")
    loss_lgd = load_insurer_config().portfolio.lgd if lgd is None else lgd
    df = df.assign(exposure_usd=exp, pd=pdv, covered_usd=exp * cover)
    g = df.groupby("buyer_id", sort=True)
    pos = pd.DataFrame(
        {
            "country_iso3": g["country_iso3"].first(),
            "sector": g["sector"].first(),
            # One buyer, one PD; should policies disagree, the worst one counts.
            "pd": g["pd"].max(),
            "exposure_usd": g["exposure_usd"].sum(),
            "covered_usd": g["covered_usd"].sum(),
        }
    )
    limit = pos.index.map(lambda b: np.inf if limits is None else limits.get(b, np.inf))
    limit = pd.Series(np.asarray(limit, dtype=float), index=pos.index)
    pos["insured_usd"] = np.minimum(pos["exposure_usd"], limit)
    scale = np.where(pos["exposure_usd"] > 0, pos["insured_usd"] / pos["exposure_usd"], 0.0)
    pos["loss_given_default_usd"] = pos["covered_usd"] * scale * loss_lgd
    pos["expected_loss_usd"] = pos["loss_given_default_usd"] * pos["pd"]
    return pos.drop(columns="covered_usd")


def _block_losses(
    rng: np.random.Generator,
    n: int,
    thresholds: np.ndarray,
    country: np.ndarray,
    n_countries: int,
    lgd_usd: np.ndarray,
    loadings: tuple[float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenarios: the default indicators (n x buyers, bool) and the losses (n)."""
    a, b, e = loadings
    z = rng.standard_normal(n).astype(np.float32)
    zc = rng.standard_normal((n, n_countries)).astype(np.float32)
    eps = rng.standard_normal((n, thresholds.size), dtype=np.float32)
    x = eps * np.float32(e)
    x += np.float32(a) * z[:, None]
    if b > 0:
        x += np.float32(b) * zc[:, country]
    defaults = x < thresholds[None, :]
    return defaults, defaults @ lgd_usd


@dataclass(frozen=True)
class LossDistribution:
    """Simulated annual losses (USD), one per scenario, and how they were drawn."""

    losses: np.ndarray
    seed: int
    block: int
    rho: float
    rho_country: float

    def var(self, level: float) -> float:
        """Value at risk: the ``level`` quantile of the loss (order statistic, no interpolation)."""
        s = np.sort(self.losses)
        return float(s[min(math.ceil(level * s.size) - 1, s.size - 1)])

    def es(self, level: float) -> float:
        """Return the expected shortfall: the mean of the worst ``(1 - level)`` share of scenarios."""
        s = np.sort(self.losses)
        k = max(math.ceil((1.0 - level) * s.size), 1)
        return float(s[-k:].mean())

    def var_interval(self, level: float, confidence: float = 0.95) -> tuple[float, float]:
        """Distribution-free interval for the VaR from the binomial law of order statistics."""
        s = np.sort(self.losses)
        n = s.size
        z = _NORMAL.inv_cdf(0.5 + confidence / 2)
        half = z * math.sqrt(n * level * (1 - level))
        lo = int(max(math.floor(n * level - half) - 1, 0))
        hi = int(min(math.ceil(n * level + half) - 1, n - 1))
        return float(s[lo]), float(s[hi])


def _loadings(rho: float, rho_country: float) -> tuple[float, float, float]:
    if rho < 0 or rho_country < 0 or rho + rho_country >= 1:
        raise ValueError(
            f"need rho, rho_country >= 0 and rho + rho_country < 1; got {rho}, {rho_country}"
        )
    return math.sqrt(rho), math.sqrt(rho_country), math.sqrt(1.0 - rho - rho_country)


def _prepare(positions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    thresholds = stats.norm.ppf(positions["pd"].to_numpy(float)).astype(np.float32)
    codes, uniques = pd.factorize(positions["country_iso3"].astype("string").fillna("unknown"))
    lgd_usd = positions["loss_given_default_usd"].to_numpy(np.float64)
    return thresholds, codes.astype(np.int64), max(len(uniques), 1), lgd_usd


def simulate_losses(
    positions: pd.DataFrame,
    *,
    scenarios: int | None = None,
    seed: int | None = None,
    rho: float | None = None,
    rho_country: float | None = None,
    params: PortfolioParams | None = None,
) -> LossDistribution:
    """Monte Carlo loss distribution of a book of buyer positions.

    Parameters
    ----------
    positions : DataFrame
        From :func:`buyer_positions`.
    scenarios, seed, rho, rho_country : optional
        Override the configured values.
    params : PortfolioParams, optional
        The shipped ``portfolio`` configuration when omitted.

    Returns
    -------
    LossDistribution
    """
    p = params or load_insurer_config().portfolio
    n = p.scenarios if scenarios is None else int(scenarios)
    if n < 1:
        raise ValueError(f"scenarios must be >= 1; got {n}")
    r = p.rho if rho is None else rho
    rc = p.rho_country if rho_country is None else rho_country
    seed_used = p.seed if seed is None else int(seed)
    loadings = _loadings(r, rc)
    thresholds, country, n_c, lgd_usd = _prepare(positions)
    children = np.random.SeedSequence(seed_used).spawn(math.ceil(n / p.block))
    losses = np.empty(n)
    for i, child in enumerate(children):
        m = min(p.block, n - i * p.block)
        _, block = _block_losses(
            np.random.default_rng(child), m, thresholds, country, n_c, lgd_usd, loadings
        )
        losses[i * p.block : i * p.block + m] = block
    return LossDistribution(losses, seed_used, p.block, r, rc)


def tail_contributions(positions: pd.DataFrame, dist: LossDistribution, level: float) -> pd.Series:
    """Each buyer's share of the expected shortfall: its mean loss over the tail scenarios.

    Re-draws the same scenarios (same seed and block) and averages each buyer's loss over the
    scenarios at or beyond the VaR, so the contributions add up to that tail's mean loss.
    """
    var = dist.var(level)
    tail = dist.losses >= var
    thresholds, country, n_c, lgd_usd = _prepare(positions)
    loadings = _loadings(dist.rho, dist.rho_country)
    n = dist.losses.size
    children = np.random.SeedSequence(dist.seed).spawn(math.ceil(n / dist.block))
    acc = np.zeros(len(positions))
    for i, child in enumerate(children):
        lo = i * dist.block
        m = min(dist.block, n - lo)
        rows = tail[lo : lo + m]
        if not rows.any():
            continue
        defaults, _ = _block_losses(
            np.random.default_rng(child), m, thresholds, country, n_c, lgd_usd, loadings
        )
        acc += defaults[rows].sum(axis=0)
    return pd.Series(acc / max(int(tail.sum()), 1) * lgd_usd, index=positions.index)


def _concentration(
    positions: pd.DataFrame, contrib: pd.Series, by: str | None, top_n: int
) -> dict[str, Any]:
    keys = positions.index.to_series() if by is None else positions[by]
    exposure = positions["insured_usd"].groupby(keys).sum()
    tail = contrib.groupby(keys).sum()
    total = float(exposure.sum())
    tail_total = float(tail.sum())
    share = exposure / total if total > 0 else exposure * 0.0
    top = share.sort_values(ascending=False).head(top_n)
    return {
        "groups": int(exposure.size),
        "hhi": float((share**2).sum()),
        "top": [
            {
                "key": str(k),
                "insured_usd": float(exposure[k]),
                "share": float(top[k]),
                "tail_share": float(tail.get(k, 0.0) / tail_total) if tail_total > 0 else 0.0,
            }
            for k in top.index
        ],
    }


def portfolio_loss(
    policies: pd.DataFrame,
    limits: Mapping[str, float] | None = None,
    *,
    levels: Sequence[float] | None = None,
    scenarios: int | None = None,
    seed: int | None = None,
    rho: float | None = None,
    rho_country: float | None = None,
    params: PortfolioParams | None = None,
    histogram_bins: int = 40,
) -> dict[str, Any]:
    """Return the book's tail: EL, VaR and ES at the configured levels, convergence, concentration.

    Parameters
    ----------
    policies : DataFrame
        See :func:`buyer_positions`.
    limits : mapping, optional
        Buyer credit limits (aggregate over exporters).
    levels : sequence of float, optional
        VaR/ES confidence levels; the configured ones when omitted.
    scenarios, seed, rho, rho_country : optional
        Override the configuration.
    params : PortfolioParams, optional
    histogram_bins : int
        Bins of the returned loss histogram (for charts).

    Returns
    -------
    dict
        ``expected_loss_usd`` (analytic, ``sum pd x LGD-exposure``), ``mc_mean_usd`` and its
        standard error, ``tail`` (per level VaR, its 95 % interval, ES), ``converged``,
        ``concentration`` by buyer, country and sector (exposure shares, HHI, tail shares), a
        ``histogram`` and the run's ``seed``/``scenarios``/``rho``.
    """
    p = params or load_insurer_config().portfolio
    qs = list(levels or p.levels)
    pos = buyer_positions(policies, limits, lgd=p.lgd)
    dist = simulate_losses(
        pos, scenarios=scenarios, seed=seed, rho=rho, rho_country=rho_country, params=p
    )
    n = dist.losses.size
    se = float(dist.losses.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    tail: list[dict[str, Any]] = []
    for q in qs:
        var = dist.var(q)
        lo, hi = dist.var_interval(q)
        tail.append(
            {
                "level": q,
                "var_usd": var,
                "var_interval_usd": [lo, hi],
                "var_relative_half_width": (hi - lo) / (2 * var) if var > 0 else 0.0,
                "es_usd": dist.es(q),
            }
        )
    head = p.headline_level if p.headline_level in qs else max(qs)
    worst = next(t for t in tail if t["level"] == head)
    converged = float(worst["var_relative_half_width"]) <= p.convergence_tolerance
    contrib = tail_contributions(pos, dist, head)
    counts, edges = np.histogram(dist.losses, bins=histogram_bins)
    return {
        "buyers": len(pos),
        "policies": len(policies),
        "exposure_usd": float(pos["exposure_usd"].sum()),
        "insured_usd": float(pos["insured_usd"].sum()),
        "expected_loss_usd": float(pos["expected_loss_usd"].sum()),
        "mc_mean_usd": float(dist.losses.mean()),
        "mc_mean_se_usd": se,
        "tail": tail,
        "headline_level": head,
        "converged": bool(converged),
        "convergence": {
            "criterion": f"95% VaR interval half-width <= {p.convergence_tolerance:.0%} of VaR",
            "relative_half_width": worst["var_relative_half_width"],
        },
        "concentration": {
            "buyer": _concentration(pos, contrib, None, p.top_n),
            "country": _concentration(pos, contrib, "country_iso3", p.top_n),
            "sector": _concentration(pos, contrib, "sector", p.top_n),
        },
        "histogram": {"edges_usd": edges.tolist(), "counts": counts.tolist()},
        "scenarios": n,
        "seed": dist.seed,
        "rho": dist.rho,
        "rho_country": dist.rho_country,
    }


# ---------------------------------------------------------------------------------------------
# Analytic single-factor results
# ---------------------------------------------------------------------------------------------


def vasicek_conditional_pd(pd: float, rho: float, z: np.ndarray | float) -> np.ndarray:
    """Default probability given the systematic factor ``z`` (single-factor model)."""
    return stats.norm.cdf(
        (stats.norm.ppf(pd) - math.sqrt(rho) * np.asarray(z)) / math.sqrt(1 - rho)
    )


def vasicek_quantile(pd: float, rho: float, level: float) -> float:
    """Loss-rate quantile of a large homogeneous portfolio (Vasicek): the Basel IRB formula.

    ``Phi((Phi^-1(pd) + sqrt(rho) Phi^-1(level)) / sqrt(1 - rho))``, as a share of the
    portfolio's loss given default.
    """
    return float(
        stats.norm.cdf(
            (stats.norm.ppf(pd) + math.sqrt(rho) * stats.norm.ppf(level)) / math.sqrt(1 - rho)
        )
    )


def single_factor_default_quantile(n: int, pd: float, rho: float, level: float) -> int:
    """Exact ``level`` quantile of the number of defaults among ``n`` identical buyers.

    ``P(D <= k) = integral Binom(k; n, p(z)) phi(z) dz`` with ``p(z)`` the conditional PD,
    integrated by Gauss-Hermite quadrature; the smallest ``k`` with ``P(D <= k) >= level``.
    """
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    pz = np.clip(vasicek_conditional_pd(pd, rho, x), 1e-300, 1 - 1e-16)
    ks = np.arange(n + 1)
    cdf = (stats.binom.cdf(ks[:, None], n, pz[None, :]) * w[None, :]).sum(axis=1)
    return int(np.searchsorted(cdf, level - 1e-12))


def estimate_rho(default_rates: Sequence[float], at_risk: Sequence[int]) -> float:
    """Asset correlation of the single-factor model from default rates over periods (moments).

    In the Vasicek model the period default rate has variance
    ``Phi2(Phi^-1(p), Phi^-1(p); rho) - p^2`` around its mean ``p``; the binomial noise of a
    finite cohort (``p (1 - p) / n`` on average) is removed first, then ``rho`` is found by
    bisection. Returns 0 when the rates vary no more than the noise.

    Parameters
    ----------
    default_rates : sequence of float
        Default rate of each period (e.g. each year's share of buyers at risk that defaulted).
    at_risk : sequence of int
        Buyers at risk in each period.
    """
    r = np.asarray(default_rates, dtype=float)
    n = np.asarray(at_risk, dtype=float)
    if r.size < 3 or r.size != n.size or (n <= 0).any():
        raise ValueError("need at least 3 periods with at_risk > 0, one rate per period")
    p = float(np.average(r, weights=n))
    if not 0 < p < 1:
        raise ValueError(f"mean default rate must be in (0, 1); got {p}")
    noise = float(np.mean(p * (1 - p) / n))
    target = max(float(np.var(r, ddof=1)) - noise, 0.0)
    if target == 0.0:
        return 0.0
    t = stats.norm.ppf(p)

    def excess(rho: float) -> float:
        cov = [[1.0, rho], [rho, 1.0]]
        return float(stats.multivariate_normal(mean=[0, 0], cov=cov).cdf([t, t])) - p * p - target

    lo, hi = 0.0, 0.99
    if excess(hi) < 0:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return (lo + hi) / 2
