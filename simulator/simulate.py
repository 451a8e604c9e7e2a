"""The simulated Shenzhen credit platform: every raw table plus the oracle, as Parquet.

``simulate`` generates firms in chunks (``chunk_size`` firms at a time, one Parquet part per
chunk and table), so memory holds one chunk only. Each chunk draws from its own random stream
(``SeedSequence(seed, spawn_key=(1, chunk))``), so the same arguments give byte-identical files.

The world (what drives default, the suspension wave, missing sources, faults) is described in
the README section "simulator" and parameterised in ``simulator/config/simulator.yaml``; the
process itself is in :mod:`simulator.process`, the tables in :mod:`simulator.tables`,
the faults in :mod:`simulator.faults`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from features.io import part_files, write_table
from features.tables import DISTRICTS, REFERENCE_DIR, TABLES
from features.uscc import SHENZHEN_DISTRICTS, generate
from simulator import faults as sim_faults
from simulator.process import (
    Countries,
    World,
    draw_wave,
    hazard_inputs,
    make_world,
    oracle_pd,
    run_chain,
)
from simulator.tables import ChunkTables, month_start

#: Packaged configuration folder (simulator.yaml); the OECD table is shared reference data.
CONFIG_DIR = Path(__file__).parent / "config"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class SimulationError(ValueError):
    """Bad arguments to :func:`simulate` (the message names the argument and the expectation)."""


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Load the simulator configuration.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file; the packaged ``simulator/config/simulator.yaml`` by default.

    Returns
    -------
    dict
        The configuration.
    """
    return yaml.safe_load(Path(path or CONFIG_DIR / "simulator.yaml").read_text("utf-8"))


def load_countries(cfg: dict[str, Any]) -> Countries:
    """Read the packaged OECD country-risk table named in the configuration.

    Parameters
    ----------
    cfg : dict
        The simulator configuration.

    Returns
    -------
    Countries
        ISO3 codes and risk categories.
    """
    df = pd.read_csv(REFERENCE_DIR / cfg["country_risk_file"])
    return Countries(df["iso3"].to_numpy(dtype=object), df["crc_as_parsed"].to_numpy(dtype=int))


def _parse_month(value: str, name: str) -> int:
    if not isinstance(value, str) or not _MONTH.match(value):
        raise SimulationError(f"{name} must be a month YYYY-MM; got {value!r}")
    return int(value[:4]) * 12 + int(value[5:7]) - 1


def _check_args(
    n_firms: int, seed: int, start: str, end: str, fault_rate: float, chunk_size: int
) -> tuple[int, int]:
    if isinstance(n_firms, bool) or not isinstance(n_firms, int | np.integer) or n_firms < 1:
        raise SimulationError(f"n_firms must be a positive integer; got {n_firms!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer; got {seed!r}")
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise SimulationError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if not isinstance(fault_rate, int | float) or not 0.0 <= float(fault_rate) <= 0.5:
        raise SimulationError(f"fault_rate must be a number in [0, 0.5]; got {fault_rate!r}")
    m0, m1 = _parse_month(start, "start"), _parse_month(end, "end")
    if m1 < m0:
        raise SimulationError(f"end must not be before start; got start={start!r}, end={end!r}")
    if m1 - m0 + 1 < 3:
        raise SimulationError(f"the window must span at least 3 months; got {start!r}..{end!r}")
    return m0, m1 - m0 + 1


def _firm_codes(n_firms: int, seed: int, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Districts and USCCs of all firms, drawn once so codes are unique across chunks."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    weights = cfg["firms"]["district_weights"]
    w = np.array([weights[d] for d in DISTRICTS], float)
    district = rng.choice(len(DISTRICTS), n_firms, p=w / w.sum())
    codes = np.empty(n_firms, dtype=object)
    for d, name in enumerate(DISTRICTS):
        idx = np.nonzero(district == d)[0]
        if len(idx):
            codes[idx] = generate(rng, len(idx), [SHENZHEN_DISTRICTS[name]])
    return district, codes


class _UnknownCodes:
    """Valid USCCs that belong to no simulated firm (for the ``unknown_firm`` fault)."""

    def __init__(self, rng: np.random.Generator, known: set[str]) -> None:
        self.rng = rng
        self.known = known

    def __call__(self, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            out += [c for c in generate(self.rng, k - len(out)) if c not in self.known]
        return out


def _clear(root: Path, name: str) -> None:
    # Stale parts from an earlier, larger run would otherwise be read as part of this one.
    for f in part_files(root, name):
        f.unlink()


def _oracle_frames(w: World) -> pd.DataFrame:
    firm, month, pd_12m = oracle_pd(w)
    return pd.DataFrame(
        {
            "usc_code": pd.Series(w.usc[firm], dtype="str"),
            "as_of": pd.Series(month_start(w.month0 + month)).astype("datetime64[ns]"),
            "pd_12m": pd_12m,
        }
    )


def _year_counts(w: World) -> tuple[np.ndarray, np.ndarray]:
    """Firms at risk at the start of each full calendar year of the window, and defaults in it."""
    first = -(w.month0 % 12) % 12  # first January in the window
    starts = np.arange(first, w.n_months - 11, 12)
    at_risk = np.array(
        [((w.reg_m < y) & (w.dereg_m >= y) & (w.default_m >= y)).sum() for y in starts], float
    )
    defaults = np.array(
        [((w.default_m >= y) & (w.default_m < y + 12) & (w.reg_m < y)).sum() for y in starts], float
    )
    return at_risk, defaults


def simulate(
    n_firms: int,
    seed: int,
    start: str,
    end: str,
    out_dir: str | Path,
    oracle_dir: str | Path,
    fault_rate: float = 0.0,
    chunk_size: int = 20_000,
    progress: bool = True,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate the platform and write every raw table and the oracle.

    Parameters
    ----------
    n_firms : int
        Number of firms.
    seed : int
        Random seed; the same arguments give byte-identical files.
    start, end : str
        First and last month, ``YYYY-MM``.
    out_dir : str or Path
        Folder for the raw tables (``out_dir/<table>/part-NNNNN.parquet``).
    oracle_dir : str or Path
        Folder for the oracle: ``true_pd``, ``defaults`` and ``faults``.
    fault_rate : float, default 0.0
        Expected share of rows per table given a data-quality fault (0 to 0.5).
    chunk_size : int, default 20000
        Firms generated (and written) per part.
    progress : bool, default True
        Show a progress bar over chunks.
    config : dict, optional
        Simulator configuration; ``simulator/config/simulator.yaml`` by default.

    Returns
    -------
    dict
        ``message``, ``n_firms``, ``months``, ``rows`` (per table), ``oracle_rows``,
        ``n_defaults``, ``default_rate_yearly``, ``faults`` (per kind), ``seconds``.

    Raises
    ------
    SimulationError
        If an argument is invalid.
    """
    t0 = time.perf_counter()
    month0, n_months = _check_args(n_firms, seed, start, end, fault_rate, chunk_size)
    n_firms, seed, chunk_size = int(n_firms), int(seed), int(chunk_size)
    cfg = config if config is not None else load_config()
    countries = load_countries(cfg)
    out_dir, oracle_dir = Path(out_dir), Path(oracle_dir)
    for name in TABLES:
        _clear(out_dir, name)
    for name in ("true_pd", "defaults", "faults"):
        _clear(oracle_dir, name)
    wave = cfg["wave"]
    wave_t = (
        _parse_month(wave["start"], "wave.start") - month0,
        _parse_month(wave["end"], "wave.end") - month0,
    )
    district, codes = _firm_codes(n_firms, seed, cfg)
    known = set(codes.tolist())
    rows = dict.fromkeys(TABLES, 0)
    faults: dict[str, int] = {}
    oracle_rows = n_defaults = 0
    at_risk_total = defaults_total = 0.0
    n_chunks = -(-n_firms // chunk_size)
    # One step per simulated month of each chunk, then one per table written.
    bar = tqdm(
        total=n_chunks * (n_months + len(TABLES)),
        desc="simulate",
        unit="step",
        disable=not progress,
    )
    for c in range(n_chunks):
        lo, hi = c * chunk_size, min((c + 1) * chunk_size, n_firms)
        streams = np.random.SeedSequence(seed, spawn_key=(1, c)).spawn(5)
        rng_firms, rng_wave, rng_chain, rng_tables, rng_faults = (
            np.random.default_rng(s) for s in streams
        )
        w = make_world(
            cfg, countries, rng_firms, codes[lo:hi], district[lo:hi], lo, month0, n_months
        )
        draw_wave(w, rng_wave, wave_t)
        hazard_inputs(w)
        bar.set_postfix_str(f"chunk {c + 1}/{n_chunks}")
        run_chain(w, rng_chain, on_month=lambda: bar.update(1))
        oracle = _oracle_frames(w)
        write_table(oracle, oracle_dir, "true_pd", c)
        oracle_rows += len(oracle)
        del oracle
        builder = ChunkTables(w, rng_tables)
        unknown = _UnknownCodes(rng_faults, known)
        truths = []
        for name, table in builder.all_tables():
            file = f"{name}/part-{c:05d}.parquet"
            df, truth = sim_faults.inject(
                table, name, file, fault_rate, rng_faults, cfg["faults"], unknown
            )
            write_table(df, out_dir, name, c)
            rows[name] += len(df)
            truths.append(truth)
            del df, table
            bar.update(1)
        truth = pd.concat(truths, ignore_index=True)
        write_table(truth, oracle_dir, "faults", c)
        for kind, k in truth["fault"].value_counts().sort_index().items():
            faults[str(kind)] = faults.get(str(kind), 0) + int(k)
        default_date = builder.default_date
        d_idx = np.nonzero(~pd.isna(default_date))[0]
        defaults = pd.DataFrame(
            {
                "usc_code": pd.Series(w.usc[d_idx], dtype="str"),
                "default_date": pd.Series(default_date[d_idx]).astype("datetime64[ns]"),
            }
        )
        write_table(defaults, oracle_dir, "defaults", c)
        n_defaults += len(defaults)
        ar, dd = _year_counts(w)
        at_risk_total += ar.sum()
        defaults_total += dd.sum()
        del builder, w
    bar.close()
    rate = defaults_total / at_risk_total if at_risk_total else float("nan")
    seconds = time.perf_counter() - t0
    return {
        "message": (
            f"simulated {n_firms:,} firms {start}..{end} in {seconds:.1f} s: "
            f"{sum(rows.values()):,} rows in {len(rows)} tables under {out_dir}, "
            f"{n_defaults:,} defaults (yearly rate {rate:.2%}), oracle under {oracle_dir}"
        ),
        "n_firms": n_firms,
        "months": n_months,
        "rows": rows,
        "oracle_rows": oracle_rows,
        "n_defaults": n_defaults,
        "default_rate_yearly": rate,
        "faults": faults,
        "seconds": seconds,
    }
