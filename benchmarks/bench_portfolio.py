"""Portfolio loss simulation: time and memory for policies x scenarios (vectorised Monte Carlo).

Usage::

    nice python benchmarks/bench_portfolio.py --out benchmarks/results_portfolio.md

Each row builds a book of N policies on N/2 buyers (two exporters per buyer on average, so
policies aggregate to buyers first), across 40 countries and 8 sectors, and runs
:func:`tradefinance.portfolio.simulate_losses` (one pass) and
:func:`tradefinance.portfolio.portfolio_loss` (two passes: losses, then tail contributions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

from tradefinance.portfolio import buyer_positions, portfolio_loss, simulate_losses


def book(n_policies: int, n_buyers: int | None = None, seed: int = 0) -> pd.DataFrame:
    """A random book: lognormal exposures, log-uniform buyer PDs.

    With ``n_buyers`` every buyer gets policies in turn (all of them used); otherwise policies
    pick among ``n_policies / 2`` buyers at random (several exporters per buyer).
    """
    rng = np.random.default_rng(seed)
    if n_buyers is None:
        n_buyers = max(n_policies // 2, 1)
        buyer = rng.integers(0, n_buyers, n_policies)
    else:
        buyer = np.arange(n_policies) % n_buyers
    pd_b = np.exp(rng.uniform(np.log(0.002), np.log(0.08), n_buyers))
    return pd.DataFrame(
        {
            "buyer_id": [f"B{b:07d}" for b in buyer],
            "exposure_usd": np.exp(rng.normal(11, 1, n_policies)),
            "cover": 0.9,
            "pd": pd_b[buyer],
            "country_iso3": [f"C{b % 40:02d}" for b in buyer],
            "sector": [f"S{b % 8}" for b in buyer],
        }
    )


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    """Run the grid and write the results table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results_portfolio.md")
    ap.add_argument(
        "--grid",
        default="1000x10000,10000x1000,10000x10000,10000x10000x10000,20000x10000",
        help="policies x scenarios[x buyers] cells",
    )
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    for cell in args.grid.split(","):
        dims = [int(x) for x in cell.split("x")]
        n_pol, n_sc = dims[0], dims[1]
        pol = book(n_pol, dims[2] if len(dims) > 2 else None)
        pos = buyer_positions(pol)
        c0, t0 = _cpu(), time.perf_counter()
        simulate_losses(pos, scenarios=n_sc, seed=1)
        t_sim, c_sim = time.perf_counter() - t0, _cpu() - c0
        c0, t0 = _cpu(), time.perf_counter()
        r = portfolio_loss(pol, scenarios=n_sc, seed=1)
        t_full, c_full = time.perf_counter() - t0, _cpu() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((n_pol, len(pos), n_sc, t_sim, c_sim, t_full, c_full, rss, r["converged"]))
        print(rows[-1], flush=True)
    load1 = os.getloadavg()
    lines = [
        "# Portfolio loss simulation benchmark",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.platform()}, Python {platform.python_version()}, `nproc` = "
        f"{os.cpu_count()}; shared with other agents' jobs",
        f"- load average (1/5/15 min) before: {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f}, "
        f"after: {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}",
        f"- command: `nice python benchmarks/bench_portfolio.py --grid {args.grid}`",
        "- model: `insurer.yaml` portfolio (rho, rho_country, block 500 scenarios x buyers of "
        "float32 draws per step); policies aggregate to buyers (N/2 buyers drawn at random, or the "
        "third number of a cell), 40 countries; CPU = user + system seconds of the process (the "
        "stable measure on a shared machine: wall time includes waiting for a core)",
        "",
        "| policies | buyers | scenarios | simulate (s) | CPU (s) | portfolio_loss (s) | CPU (s) "
        "| peak RSS (MB) | converged |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for n_pol, n_b, n_sc, ts, cs, tf, cf, rss, conv in rows:
        lines.append(
            f"| {n_pol:,} | {n_b:,} | {n_sc:,} | {ts:.2f} | {cs:.2f} | {tf:.2f} | {cf:.2f} "
            f"| {rss:,.0f} | {conv} |"
        )
    lines += [
        "",
        "Scaling: the work is one float32 normal draw and one compare per buyer x scenario and a "
        "matrix-vector product per block, so time grows linearly in buyers x scenarios; memory "
        "is bounded by the block (block x buyers x 5 bytes), not by the number of scenarios. "
        "`portfolio_loss` re-draws the tail scenarios' blocks for the contributions, about twice "
        "the one-pass time.",
    ]
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
