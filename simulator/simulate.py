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
from dataclasses import dataclass, field
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
from simulator.buyers import Buyers, buyer_oracle, buyers_table, default_frame, draw_buyers
from simulator.config_model import SimulationError, validate_config
from simulator.macro import Macro, draw_macro, indicators, oracle_frame
from simulator.process import (
    Countries,
    World,
    attach_world_state,
    draw_wave,
    hazard_inputs,
    make_world,
    oracle_pd,
    run_chain,
)
from simulator.tables import ChunkTables, month_start, period_strings, typed

#: Packaged configuration folder (simulator.yaml); the OECD table is shared reference data.
CONFIG_DIR = Path(__file__).parent / "config"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


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
    path = Path(path or CONFIG_DIR / "simulator.yaml")
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SimulationError(f"simulator configuration {path}: cannot read: {exc}") from exc
    return validate_config(raw, str(path))


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


#: Oracle tables (folders under the oracle directory).
ORACLE_TABLES = ("true_pd", "defaults", "faults", "macro", "buyer_pd", "buyer_defaults")
#: Raw tables of the whole world, written once (part 0) rather than per chunk of firms.
WORLD_TABLES = ("buyers", "macro_indicators")
#: Kind of each default in ``ORACLE/defaults``: index 0 is the credit route (via arrears).
DEFAULT_KINDS = ("credit",)


@dataclass
class _Shared:
    """What every chunk of a world shares: configuration, window, factor path, buyer pool."""

    cfg: dict[str, Any]
    seed: int
    month0: int
    n_months: int
    countries: Countries
    macro: Macro
    buyers: Buyers
    wave_t: tuple[int, int]
    district: np.ndarray
    codes: np.ndarray
    fault_rate: float
    out_dir: Path
    oracle_dir: Path


@dataclass
class _Totals:
    """Counts accumulated over chunks for the summary."""

    rows: dict[str, int]
    faults: dict[str, int] = field(default_factory=dict)
    oracle_rows: int = 0
    n_defaults: int = 0
    at_risk: np.ndarray | None = None
    defaults: np.ndarray | None = None

    def add_faults(self, truth: pd.DataFrame) -> None:
        for kind, k in truth["fault"].value_counts().sort_index().items():
            self.faults[str(kind)] = self.faults.get(str(kind), 0) + int(k)

    def add_years(self, at_risk: np.ndarray, defaults: np.ndarray) -> None:
        self.at_risk = at_risk if self.at_risk is None else self.at_risk + at_risk
        self.defaults = defaults if self.defaults is None else self.defaults + defaults


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


def _shared(
    n_firms: int,
    seed: int,
    month0: int,
    n_months: int,
    cfg: dict[str, Any],
    fault_rate: float,
    out_dir: Path,
    oracle_dir: Path,
) -> _Shared:
    """Draw what the chunks share: firm codes, the macro path and the buyer pool."""
    countries = load_countries(cfg)
    wave = cfg["wave"]
    wave_t = (
        _parse_month(wave["start"], "wave.start") - month0,
        _parse_month(wave["end"], "wave.end") - month0,
    )
    district, codes = _firm_codes(n_firms, seed, cfg)
    rng_macro, rng_buyers = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed, spawn_key=(2,)).spawn(2)
    )
    macro = draw_macro(cfg["macro"], rng_macro, month0, n_months)
    buyers = draw_buyers(cfg, countries, macro, rng_buyers, n_firms, n_months)
    return _Shared(
        cfg,
        seed,
        month0,
        n_months,
        countries,
        macro,
        buyers,
        wave_t,
        district,
        codes,
        fault_rate,
        out_dir,
        oracle_dir,
    )


def _write_world(sh: _Shared, totals: _Totals, rng: np.random.Generator) -> None:
    """Write the world-level raw tables and oracles (buyers, macro) as part 0."""
    periods = period_strings(sh.month0, sh.n_months)
    tables = {
        "buyers": buyers_table(sh.buyers, sh.countries),
        "macro_indicators": indicators(sh.cfg["macro"], sh.macro, rng, periods),
    }
    truths = []
    for name, table in tables.items():
        df, truth = sim_faults.inject(
            typed(table, name),
            name,
            f"{name}/part-00000.parquet",
            sh.fault_rate,
            rng,
            sh.cfg["faults"],
            lambda k: [],
        )
        write_table(df, sh.out_dir, name, 0)
        totals.rows[name] += len(df)
        truths.append(truth)
    truth = pd.concat(truths, ignore_index=True)
    write_table(truth, sh.oracle_dir, "faults", 0)
    totals.add_faults(truth)
    write_table(oracle_frame(sh.macro, periods), sh.oracle_dir, "macro", 0)
    bp = buyer_oracle(sh.buyers, sh.cfg["buyers"]["payment"], sh.macro, sh.month0)
    write_table(bp, sh.oracle_dir, "buyer_pd", 0)
    write_table(default_frame(sh.buyers, sh.month0), sh.oracle_dir, "buyer_defaults", 0)


def _default_frame(w: World, default_date: np.ndarray) -> pd.DataFrame:
    """``ORACLE/defaults``: firm, default date, kind (credit or the cause of a sudden one)."""
    kinds = np.array([*DEFAULT_KINDS, *w.cfg["sudden"]["causes"]], dtype=object)
    d_idx = np.nonzero(~pd.isna(default_date))[0]
    return pd.DataFrame(
        {
            "usc_code": pd.Series(w.usc[d_idx], dtype="str"),
            "default_date": pd.Series(default_date[d_idx]).astype("datetime64[ns]"),
            "kind": pd.Series(kinds[w.sudden[d_idx]], dtype="str"),
        }
    )


def _run_chunk(
    c: int, lo: int, hi: int, sh: _Shared, known: set[str], totals: _Totals, bar: Any
) -> None:
    """Simulate one chunk of firms and write its parts of every firm table and oracle."""
    streams = np.random.SeedSequence(sh.seed, spawn_key=(1, c)).spawn(6)
    rng_firms, rng_wave, rng_chain, rng_tables, rng_faults, rng_buyers = (
        np.random.default_rng(s) for s in streams
    )
    w = make_world(
        sh.cfg,
        sh.countries,
        rng_firms,
        sh.codes[lo:hi],
        sh.district[lo:hi],
        lo,
        sh.month0,
        sh.n_months,
    )
    draw_wave(w, rng_wave, sh.wave_t)
    attach_world_state(w, sh.macro, sh.buyers, rng_buyers)
    hazard_inputs(w)
    run_chain(w, rng_chain, on_month=lambda: bar.update(1))
    oracle = _oracle_frames(w)
    write_table(oracle, sh.oracle_dir, "true_pd", c)
    totals.oracle_rows += len(oracle)
    del oracle
    builder = ChunkTables(w, rng_tables)
    unknown = _UnknownCodes(rng_faults, known)
    # Part 0 of the fault truth holds the world tables' faults; chunk c writes part c + 1.
    truths = []
    for name, table in builder.all_tables():
        file = f"{name}/part-{c:05d}.parquet"
        df, truth = sim_faults.inject(
            table, name, file, sh.fault_rate, rng_faults, sh.cfg["faults"], unknown
        )
        write_table(df, sh.out_dir, name, c)
        totals.rows[name] += len(df)
        truths.append(truth)
        del df, table
        bar.update(1)
    truth = pd.concat(truths, ignore_index=True)
    write_table(truth, sh.oracle_dir, "faults", c + 1)
    totals.add_faults(truth)
    defaults = _default_frame(w, builder.default_date)
    write_table(defaults, sh.oracle_dir, "defaults", c)
    totals.n_defaults += len(defaults)
    totals.add_years(*_year_counts(w))


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
        Folder for the oracle: ``true_pd``, ``defaults``, ``faults``, ``macro``, ``buyer_pd``
        and ``buyer_defaults``.
    fault_rate : float, default 0.0
        Expected share of rows per table given a data-quality fault (0 to 0.5).
    chunk_size : int, default 20000
        Firms generated (and written) per part.
    progress : bool, default True
        Show a progress bar over chunks.
    config : dict, optional
        Simulator configuration; ``simulator/config/simulator.yaml`` by default (validated).

    Returns
    -------
    dict
        ``message``, ``n_firms``, ``months``, ``rows`` (per table), ``oracle_rows``,
        ``n_defaults``, ``default_rate_yearly``, ``default_rate_by_year`` (calendar year ->
        rate among firms at risk on 1 January), ``faults`` (per kind), ``seconds``.

    Raises
    ------
    SimulationError
        If an argument or the configuration is invalid.
    """
    t0 = time.perf_counter()
    month0, n_months = _check_args(n_firms, seed, start, end, fault_rate, chunk_size)
    n_firms, seed, chunk_size = int(n_firms), int(seed), int(chunk_size)
    cfg = validate_config(config) if config is not None else load_config()
    out_dir, oracle_dir = Path(out_dir), Path(oracle_dir)
    for name in TABLES:
        _clear(out_dir, name)
    for name in ORACLE_TABLES:
        _clear(oracle_dir, name)
    sh = _shared(n_firms, seed, month0, n_months, cfg, float(fault_rate), out_dir, oracle_dir)
    totals = _Totals(rows=dict.fromkeys(TABLES, 0))
    _write_world(sh, totals, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,))))
    known = set(sh.codes.tolist())
    n_chunks = -(-n_firms // chunk_size)
    chunk_tables = len(TABLES) - len(WORLD_TABLES)
    # One step per simulated month of each chunk, then one per table written.
    bar = tqdm(
        total=n_chunks * (n_months + chunk_tables),
        desc="simulate",
        unit="step",
        disable=not progress,
    )
    for c in range(n_chunks):
        bar.set_postfix_str(f"chunk {c + 1}/{n_chunks}")
        _run_chunk(c, c * chunk_size, min((c + 1) * chunk_size, n_firms), sh, known, totals, bar)
    bar.close()
    return _summary(totals, n_firms, n_months, month0, start, end, out_dir, oracle_dir, t0)


def _summary(
    totals: _Totals,
    n_firms: int,
    n_months: int,
    month0: int,
    start: str,
    end: str,
    out_dir: Path,
    oracle_dir: Path,
    t0: float,
) -> dict[str, Any]:
    at_risk = totals.at_risk if totals.at_risk is not None else np.zeros(0)
    defaults = totals.defaults if totals.defaults is not None else np.zeros(0)
    rate = defaults.sum() / at_risk.sum() if at_risk.sum() else float("nan")
    first_year = (month0 + (-(month0 % 12) % 12)) // 12
    by_year = {
        str(first_year + k): float(d / a) if a else float("nan")
        for k, (a, d) in enumerate(zip(at_risk, defaults, strict=True))
    }
    seconds = time.perf_counter() - t0
    return {
        "message": (
            f"simulated {n_firms:,} firms {start}..{end} in {seconds:.1f} s: "
            f"{sum(totals.rows.values()):,} rows in {len(totals.rows)} tables under {out_dir}, "
            f"{totals.n_defaults:,} defaults (yearly rate {rate:.2%}), oracle under {oracle_dir}"
        ),
        "n_firms": n_firms,
        "months": n_months,
        "rows": totals.rows,
        "oracle_rows": totals.oracle_rows,
        "n_defaults": totals.n_defaults,
        "default_rate_yearly": rate,
        "default_rate_by_year": by_year,
        "faults": totals.faults,
        "seconds": seconds,
    }


def simulate_latent(
    n_firms: int, seed: int, start: str, end: str, config: dict[str, Any] | None = None
) -> World:
    """Run only the latent process of a world as one chunk (no tables, nothing written).

    For checks on a large world that need the chain, not the data: roll rates, default
    shares, the oracle. Same streams as :func:`simulate` with one chunk of ``n_firms``.

    Parameters
    ----------
    n_firms, seed, start, end, config
        As for :func:`simulate`.

    Returns
    -------
    World
        The chunk after the health and delinquency chain ran.
    """
    month0, n_months = _check_args(n_firms, seed, start, end, 0.0, n_firms)
    cfg = validate_config(config) if config is not None else load_config()
    sh = _shared(n_firms, seed, month0, n_months, cfg, 0.0, Path("."), Path("."))
    streams = np.random.SeedSequence(seed, spawn_key=(1, 0)).spawn(6)
    rng_firms, rng_wave, rng_chain, _, _, rng_buyers = (np.random.default_rng(s) for s in streams)
    w = make_world(cfg, sh.countries, rng_firms, sh.codes, sh.district, 0, month0, n_months)
    draw_wave(w, rng_wave, sh.wave_t)
    attach_world_state(w, sh.macro, sh.buyers, rng_buyers)
    hazard_inputs(w)
    run_chain(w, rng_chain)
    return w
