"""``kuaxin monitor`` on simulated worlds: a shock after training turns its grades red, a
stable world does not beyond the tests' false-positive rate.

Two small worlds from the simulator's own configuration (``simulator/config/simulator.yaml``),
same seed: the *shocked* world has no macro noise and one scripted episode (``SHOCK``) that
starts after the model's last training outcome; the *stable* world has neither noise nor
episodes. In each, a model (LightGBM defaults, no search) is trained on as-of dates whose
outcomes end before the shock and monitored on the quarterly snapshots after it; the two
models differ only by the simulator's random draws.

What a false positive is needs a PD known to be right: the trained model's own PDs are not (on
this world it under-predicts its best grades, where defaults without warning set a floor the
Platt map extrapolates below, which the monitor rightly flags). The stable-world test therefore
backtests the oracle's true PDs through the same per-grade backtest.
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

WORLD = {"n_firms": 1500, "seed": 5, "start": "2019-01", "end": "2024-06", "fault_rate": 0.0}
TRAIN = (date(2020, 1, 1), date(2021, 10, 1))  # outcomes end 2022-10: before the shock
MONITOR = (date(2022, 1, 1), date(2023, 4, 1))
#: a severe shock (the shipped 2020 episode peaks at 2.6): this small world's default rate falls
#: as its firms age, so a model trained on 2020-21 over-predicts later years, and a milder shock
#: only brings defaults back to the PDs (not a failure the one-sided tests should flag)
SHOCK = {"name": "test_shock_2023", "start": "2023-01", "end": "2023-06", "level": 5.0}
#: monitored periods whose 12-month outcome window holds the shock's defaults (onset, then
#: about three months of arrears before the 90-dpd default)
SHOCKED = ("2022-10-01", "2023-01-01", "2023-04-01")


def _world(tmp: Path, episodes: list[dict]) -> dict:
    """Simulate, ingest, train before the shock, monitor after it; and the oracle's rows."""
    from features.dataset import build_dataset, default_events
    from features.ingest import ingest
    from features.snapshot import load_clean
    from simulator.simulate import load_config, simulate
    from training.report import read_oracle
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
    labelled = build_dataset(tables, *MONITOR, every="quarter")
    observed_to = pd.Timestamp(WORLD["end"]) + pd.offsets.MonthEnd(0)
    snaps = labelled.drop(columns=["label", "default_date"])
    report = monitor(result.model, snaps, default_events(tables), observed_to)
    truth = labelled[["usc_code", "as_of", "label"]].merge(
        read_oracle(tmp / "oracle").rename(columns={"pd_12m": "pd"}), on=["usc_code", "as_of"]
    )
    truth["grade"] = result.model.master_scale.grade(truth["pd"].to_numpy())
    return {"model": result.model, "report": report, "truth": truth}


@pytest.fixture(scope="module")
def shocked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _world(tmp_path_factory.mktemp("shocked"), [SHOCK])


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _world(tmp_path_factory.mktemp("stable"), [])


def _periods(world: dict) -> dict[str, dict]:
    return {p["as_of"]: p for p in world["report"]["periods"]}


def test_shock_after_training_turns_the_shocked_periods_red(shocked, stable) -> None:
    hit, calm = _periods(shocked), _periods(stable)
    for when in SHOCKED:
        assert hit[when]["complete"]
        assert hit[when]["portfolio"]["light"] == "red", hit[when]["portfolio"]
        assert calm[when]["portfolio"]["light"] != "red"
        # the same firms under (almost) the same model: the shock adds red grades
        assert hit[when]["lights"]["red"] >= calm[when]["lights"]["red"] + 2, (
            hit[when]["lights"],
            calm[when]["lights"],
        )
    # before the shock the model is not red
    assert hit["2022-01-01"]["portfolio"]["light"] != "red"
    assert shocked["report"]["verdict"]["code"] in ("recalibrate", "retrain")
    assert any(
        r["key"] in ("monitor.reason.red", "monitor.reason.portfolio")
        for r in shocked["report"]["verdict"]["reasons"]
    )


def _red_size(n: int, pd_: float, alpha: float) -> float:
    ds = np.arange(n + 1)
    red = stats.beta.cdf(pd_, ds + 0.5, n - ds + 0.5) < alpha
    return float(stats.binom.pmf(ds, n, pd_)[red].sum())


def _oracle_periods(stable: dict) -> list[dict]:
    from training.monitor import grade_backtest

    truth = stable["truth"]
    complete = truth[pd.to_datetime(truth["as_of"]) <= pd.Timestamp("2023-06-30")]
    cfg = load_monitor_config()
    return [
        grade_backtest(rows, stable["model"].master_scale, cfg)
        for _, rows in complete.groupby("as_of")
    ]


def test_stable_world_true_pds_flag_no_more_reds_than_the_false_positive_rate(stable) -> None:
    cfg = load_monitor_config()
    assert cfg.traffic_lights.light_test == "jeffreys"
    cells = [g for p in _oracle_periods(stable) for g in p["grades"] if g["light"]]
    assert len(cells) >= 30
    # Allowance: each cell's exact red probability if its mean PD is right, and the 99.9 %
    # quantile of the number of reds those imply (Poisson-binomial, by convolution). Cells of
    # one period share firms across periods, so the count is more spread than independent
    # cells would give; the 99.9 % quantile leaves room for that.
    alpha = 1 - cfg.traffic_lights.red_confidence
    dist = np.array([1.0])
    for g in cells:
        s = _red_size(g["n"], g["mean_pd"], alpha)
        dist = np.convolve(dist, [1 - s, s])
    allowed = int(np.searchsorted(np.cumsum(dist), 0.999))
    reds = [
        (g["grade"], g["n"], g["defaults"], g["expected_defaults"])
        for g in cells
        if g["light"] == "red"
    ]
    assert len(reds) <= allowed, (len(reds), allowed, reds)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "world side: in the stable world (no episodes, sigma 0) the oracle's 12-month PDs "
        "under-predict the labels' defaults in 2022 (e.g. 66 observed vs 51 expected of 1,154 "
        "firms at 2022-04), so the portfolio test is rightly red; strict, so a fixed oracle "
        "makes this fail until the marker goes"
    ),
)
def test_stable_world_true_pds_keep_the_portfolio_out_of_red(stable) -> None:
    assert all(p["portfolio"]["light"] != "red" for p in _oracle_periods(stable))
