"""``kuaxin monitor`` on simulated worlds: a shock after training turns its grades red, a
stable world does not.

Two tiny worlds from the simulator's own configuration (``simulator/config/simulator.yaml``):
the *shocked* world has no macro noise and one scripted episode (``SHOCK``) that starts after
the model's last training outcome; the *stable* world has neither noise nor episodes. In each,
a model (LightGBM defaults, no search) is trained on as-of dates whose 12-month outcomes end
before the shock, then monitored on the quarterly snapshots after it.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from training.monitor import load_monitor_config, monitor

WORLD = {"n_firms": 2500, "seed": 5, "start": "2019-01", "end": "2024-06", "fault_rate": 0.0}
TRAIN = (date(2020, 1, 1), date(2021, 10, 1))  # outcomes end 2022-10: before the shock
MONITOR = (date(2022, 1, 1), date(2023, 4, 1))
#: a severe shock (the shipped 2020 episode peaks at 2.6): this small world's default rate falls
#: as its firms age, so a model trained on 2020-21 over-predicts later years, and a milder shock
#: only brings defaults back to the PDs (not a failure the one-sided tests should flag)
SHOCK = {"name": "test_shock_2023", "start": "2023-01", "end": "2023-06", "level": 5.0}
#: monitored periods whose 12-month outcome window holds the shock's defaults (onset, then
#: about three months of arrears before the 90-dpd default)
SHOCKED = ("2022-10-01", "2023-01-01", "2023-04-01")


def _world(tmp: Path, episodes: list[dict]) -> tuple[object, dict]:
    """Simulate, ingest, train before the shock, and monitor after it."""
    from features.dataset import build_dataset, default_events
    from features.ingest import ingest
    from features.snapshot import load_clean
    from simulator.simulate import load_config, simulate
    from training.train import train_credit

    cfg = copy.deepcopy(load_config())
    cfg["macro"]["sigma"] = 0.0
    cfg["macro"]["episodes"] = episodes
    for indicator in cfg["macro"]["indicators"].values():  # they name the shipped episodes
        indicator["episodes"] = {}
    simulate(out_dir=tmp / "raw", oracle_dir=tmp / "oracle", progress=False, config=cfg, **WORLD)
    ingest(tmp / "raw", tmp / "clean", progress=False)
    tables = load_clean(tmp / "clean")
    result = train_credit(build_dataset(tables, *TRAIN, every="quarter"), trials=0)
    snaps = build_dataset(tables, *MONITOR, every="quarter").drop(columns=["label", "default_date"])
    observed_to = pd.Timestamp(WORLD["end"]) + pd.offsets.MonthEnd(0)
    report = monitor(result.model, snaps, default_events(tables), observed_to)
    return result, report


@pytest.fixture(scope="module")
def shocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    return _world(tmp_path_factory.mktemp("shocked"), [SHOCK])


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    return _world(tmp_path_factory.mktemp("stable"), [])


def test_shock_after_training_turns_the_shocked_periods_red(shocked) -> None:
    _, report = shocked
    periods = {p["as_of"]: p for p in report["periods"]}
    for when in SHOCKED:
        p = periods[when]
        assert p["complete"]
        assert p["portfolio"]["light"] == "red", p["portfolio"]
        tested = [g for g in p["grades"] if g["light"] and g["expected_defaults"] >= 2]
        assert tested
        detail = [
            (g["grade"], g["n"], g["defaults"], round(g["expected_defaults"], 1), g["light"])
            for g in tested
        ]
        assert sum(g["light"] == "red" for g in tested) >= 0.5 * len(tested), (when, detail)
    # before the shock the same model is not red
    assert periods["2022-01-01"]["portfolio"]["light"] != "red"
    assert report["verdict"]["code"] in ("recalibrate", "retrain")


def _red_size(n: int, pd_: float, alpha: float) -> float:
    ds = np.arange(n + 1)
    red = stats.beta.cdf(pd_, ds + 0.5, n - ds + 0.5) < alpha
    return float(stats.binom.pmf(ds, n, pd_)[red].sum())


def test_stable_world_flags_no_more_reds_than_the_false_positive_rate(stable) -> None:
    _, report = stable
    cfg = load_monitor_config()
    assert cfg.traffic_lights.light_test == "jeffreys"
    cells = [g for p in report["periods"] if p["complete"] for g in p["grades"] if g["light"]]
    # Allowance: the exact red probability of every cell if its mean PD were right, summed;
    # the 99.9 % quantile of that count (Poisson-binomial by convolution). A trained model's
    # PDs carry estimation error the allowance does not forgive: this is the strict version.
    alpha = 1 - cfg.traffic_lights.red_confidence
    dist = np.array([1.0])
    for g in cells:
        s = _red_size(g["n"], g["mean_pd"], alpha)
        dist = np.convolve(dist, [1 - s, s])
    allowed = int(np.searchsorted(np.cumsum(dist), 0.999))
    reds = sum(g["light"] == "red" for g in cells)
    assert reds <= allowed, (
        reds,
        allowed,
        [
            (g["grade"], g["n"], g["defaults"], g["expected_defaults"])
            for g in cells
            if g["light"] == "red"
        ],
    )
    assert all(p["portfolio"]["light"] != "red" for p in report["periods"] if p["complete"])
