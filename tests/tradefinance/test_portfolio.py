"""Portfolio loss: Monte Carlo against the analytic single-factor model, tail behaviour."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tradefinance.insurer_config import load_insurer_config
from tradefinance.portfolio import (
    buyer_positions,
    portfolio_loss,
    simulate_losses,
    single_factor_default_quantile,
    tail_contributions,
    vasicek_quantile,
)

P = load_insurer_config().portfolio


def _book(n: int, pd_: float = 0.02, exposure: float = 1000.0, countries: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "buyer_id": [f"B{i:05d}" for i in range(n)],
            "exposure_usd": exposure,
            "cover": 1.0,
            "pd": pd_,
            "country_iso3": [f"C{i % countries:02d}" for i in range(n)],
            "sector": [f"S{i % 3}" for i in range(n)],
        }
    )


def test_monte_carlo_agrees_with_the_exact_single_factor_quantile_and_mean() -> None:
    n, pd_, rho, q = 800, 0.02, 0.15, 0.995
    pos = buyer_positions(_book(n, pd_), lgd=1.0)
    dist = simulate_losses(pos, scenarios=20_000, rho=rho, rho_country=0.0, seed=7)
    exact = single_factor_default_quantile(n, pd_, rho, q) * 1000.0
    lo, hi = dist.var_interval(q, confidence=0.99)
    assert lo <= exact <= hi, (lo, exact, hi)
    se = dist.losses.std(ddof=1) / np.sqrt(dist.losses.size)
    assert abs(dist.losses.mean() - pos["expected_loss_usd"].sum()) < 4 * se
    # The large-portfolio (Vasicek) limit is close for many small buyers, below the finite book.
    lhp = vasicek_quantile(pd_, rho, q) * n * 1000.0
    assert abs(lhp - exact) / exact < 0.05


def test_same_seed_same_losses_and_another_seed_differs() -> None:
    pos = buyer_positions(_book(300))
    a = simulate_losses(pos, scenarios=1500, seed=3)
    b = simulate_losses(pos, scenarios=1500, seed=3)
    c = simulate_losses(pos, scenarios=1500, seed=4)
    assert np.array_equal(a.losses, b.losses)
    assert not np.array_equal(a.losses, c.losses)


def test_var_rises_with_the_factor_loading() -> None:
    pos = buyer_positions(_book(400))
    vars_ = [
        simulate_losses(pos, scenarios=4000, seed=1, rho=r, rho_country=0.0).var(0.995)
        for r in (0.02, 0.10, 0.25, 0.45)
    ]
    assert all(a < b for a, b in itertools.pairwise(vars_)), vars_


def test_var_rises_with_concentration_at_the_same_exposure() -> None:
    total = 1_000_000.0
    few = portfolio_loss(_book(5, exposure=total / 5), scenarios=4000, seed=2)
    many = portfolio_loss(_book(500, exposure=total / 500), scenarios=4000, seed=2)
    assert few["expected_loss_usd"] == pytest.approx(many["expected_loss_usd"])
    assert few["tail"][-1]["var_usd"] > many["tail"][-1]["var_usd"]
    assert few["concentration"]["buyer"]["hhi"] > many["concentration"]["buyer"]["hhi"]


def test_var_falls_with_diversification_across_countries() -> None:
    one = buyer_positions(_book(400, countries=1))
    spread = buyer_positions(_book(400, countries=20))
    a = simulate_losses(one, scenarios=4000, seed=5, rho=0.1, rho_country=0.2).var(0.995)
    b = simulate_losses(spread, scenarios=4000, seed=5, rho=0.1, rho_country=0.2).var(0.995)
    assert b < a


def test_policies_on_one_buyer_default_together_within_its_limit() -> None:
    pol = pd.DataFrame(
        {
            "buyer_id": ["X", "X", "Y"],
            "exposure_usd": [300_000.0, 100_000.0, 50_000.0],
            "cover": [0.9, 0.8, 0.9],
            "pd": [0.3, 0.3, 0.3],
        }
    )
    pos = buyer_positions(pol, limits={"X": 200_000.0}, lgd=1.0)
    assert pos.loc["X", "insured_usd"] == 200_000.0
    # Pro rata: half of each policy is insured.
    assert pos.loc["X", "loss_given_default_usd"] == pytest.approx(0.5 * (270_000 + 80_000))
    assert pos.loc["Y", "insured_usd"] == 50_000.0
    dist = simulate_losses(pos, scenarios=2000, seed=0)
    allowed = {0.0, 175_000.0, 45_000.0, 220_000.0}
    assert set(np.round(dist.losses, 6)) <= allowed
    assert len(set(np.round(dist.losses, 6))) == 4


def test_tail_contributions_add_up_to_the_tail_mean() -> None:
    pos = buyer_positions(_book(200, countries=4))
    dist = simulate_losses(pos, scenarios=3000, seed=9)
    contrib = tail_contributions(pos, dist, 0.99)
    tail = dist.losses[dist.losses >= dist.var(0.99)]
    assert contrib.sum() == pytest.approx(tail.mean())
    assert (contrib >= 0).all()


def test_convergence_flag_needs_enough_scenarios_and_result_is_complete() -> None:
    small = portfolio_loss(_book(300), scenarios=200, seed=1)
    big = portfolio_loss(_book(300), scenarios=40_000, seed=1)
    assert not small["converged"] and big["converged"]
    width = [r["convergence"]["relative_half_width"] for r in (small, big)]
    assert width[1] <= P.convergence_tolerance < width[0]
    assert [t["level"] for t in big["tail"]] == P.levels
    for t in big["tail"]:
        assert t["var_interval_usd"][0] <= t["var_usd"] <= t["var_interval_usd"][1]
        assert t["es_usd"] >= t["var_usd"]
    assert sum(big["histogram"]["counts"]) == 40_000
    assert big["concentration"]["sector"]["groups"] == 3


@pytest.mark.parametrize(
    ("column", "value"), [("pd", 0.0), ("pd", 1.0), ("cover", 1.5), ("exposure_usd", -1.0)]
)
def test_bad_policies_name_the_column(column: str, value: float) -> None:
    book = _book(3)
    book.loc[0, column] = value
    with pytest.raises(ValueError, match=column):
        buyer_positions(book)
    with pytest.raises(ValueError, match="buyer_id"):
        buyer_positions(book.drop(columns="buyer_id"))


def test_rho_is_recovered_from_default_rates_of_a_vasicek_world() -> None:
    from tradefinance.portfolio import estimate_rho, vasicek_conditional_pd

    rng = np.random.default_rng(4)
    n, periods = 5000, 3000
    for rho in (0.05, 0.15, 0.30):
        z = rng.standard_normal(periods)
        rates = rng.binomial(n, vasicek_conditional_pd(0.02, rho, z)) / n
        assert estimate_rho(rates, [n] * periods) == pytest.approx(rho, abs=0.05)
    # Rates that vary only by binomial noise carry no correlation.
    flat = rng.binomial(n, 0.02, periods) / n
    assert estimate_rho(flat, [n] * periods) < 0.01
    with pytest.raises(ValueError, match="periods"):
        estimate_rho([0.01, 0.02], [100, 100])
