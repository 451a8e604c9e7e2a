"""Per-year metrics and the point-in-time / through-the-cycle calibration choice."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from training.cycle import CycleConfig, calibration_config, ttc_shift, year_rows
from training.scale import load_config


def test_ttc_shift_moves_the_mean_pd_to_the_target() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(-3.5, 1.0, 5000)
    d = ttc_shift(z, 0.08, 3.0)
    assert abs(float(np.mean(1 / (1 + np.exp(-(z + d))))) - 0.08) < 1e-8
    assert d > 0  # the mean PD of z is below 8 %
    with pytest.raises(ValueError, match="max_shift"):
        ttc_shift(z, 0.9, 0.5)


def test_calibration_mode_is_validated() -> None:
    with pytest.raises(ValidationError):
        calibration_config({"calibration": {"mode": "sometimes"}})
    with pytest.raises(ValidationError):
        calibration_config({"calibration": {"mode": "point_in_time", "shift": 1}})
    assert calibration_config({}).mode == "point_in_time"


def test_year_rows_count_and_rates() -> None:
    rng = np.random.default_rng(1)
    years = np.repeat([2021, 2022], 400)
    p = rng.uniform(0.01, 0.2, 800)
    y = (rng.uniform(size=800) < p).astype(int)
    rows = year_rows(y, p, years, CycleConfig(min_year_rows=10, min_year_defaults=1))
    assert [r["year"] for r in rows] == [2021, 2022]
    assert rows[0]["defaults"] == int(y[:400].sum())
    assert rows[1]["mean_pd"] == pytest.approx(p[400:].mean())
    assert rows[0]["auc"] is not None and rows[0]["ece"] is not None
    assert len(rows[0]["calibration_table"]) == 10


def test_report_has_per_year_out_of_time_metrics(trained_credit) -> None:
    from training.report import build_report

    report = build_report(trained_credit)
    cycle = report["cycle"]
    ev = trained_credit.eval_frame
    years = sorted(pd.to_datetime(ev["as_of"]).dt.year.unique())
    assert [r["year"] for r in cycle["out_of_time"]] == years
    assert sum(r["n"] for r in cycle["out_of_time"]) == len(ev)
    assert sum(r["defaults"] for r in cycle["out_of_time"]) == int(ev["label"].sum())
    for r in cycle["out_of_time"]:
        sub = ev[pd.to_datetime(ev["as_of"]).dt.year == r["year"]]
        assert r["mean_pd"] == pytest.approx(float(sub["pd"].mean()))
    assert cycle["in_sample"] and max(r["year"] for r in cycle["in_sample"]) <= years[0]
    # both modes measured on the same rows; PIT is the shipped mode, so its numbers are the model's
    modes = cycle["modes"]
    assert modes["point_in_time"]["mean_pd"] == pytest.approx(float(ev["pd"].mean()))
    shift = cycle["calibration"]["ttc_shift"]
    assert (modes["through_the_cycle"]["mean_pd"] > modes["point_in_time"]["mean_pd"]) == (
        shift > 0
    )


def test_through_the_cycle_mode_calibrates_to_the_long_run_rate(train_dataset) -> None:
    from training.train import time_split, train_credit

    cfg = copy.deepcopy(load_config())
    cfg["calibration"]["mode"] = "through_the_cycle"
    result = train_credit(train_dataset, config=cfg, trials=0, num_threads=1)
    info = result.metrics["calibration_mode"]
    assert info["mode"] == "through_the_cycle"
    assert result.model.calibration["intercept"] == pytest.approx(
        info["pit_intercept"] + info["ttc_shift"]
    )
    # the validation window's mean PD (of the train-window booster) equals the long-run rate
    assert result.metrics["lightgbm"]["validation"]["mean_pd"] == pytest.approx(
        info["long_run_default_rate"], rel=0.02
    )
    times = pd.to_datetime(train_dataset["as_of"])
    tr, va, _ = time_split(times, cfg["split"]["test_share"], cfg["split"]["validation_share"])
    rates = train_dataset[tr | va].groupby(times[tr | va].dt.year)["label"].mean()
    assert info["long_run_default_rate"] == pytest.approx(float(rates.mean()))


def test_report_compares_model_challenger_and_oracle_per_year(trained_credit, sim_dirs) -> None:
    from training.report import build_report

    cycle = build_report(trained_credit, oracle_dir=sim_dirs[1])["cycle"]
    years = [r["year"] for r in cycle["out_of_time"]]
    assert [r["year"] for r in cycle["oracle_out_of_time"]] == years
    for model_row, oracle_row in zip(
        cycle["out_of_time"], cycle["oracle_out_of_time"], strict=True
    ):
        assert oracle_row["n"] == model_row["n"]  # every test row has its true PD
        assert oracle_row["defaults"] == model_row["defaults"]
        assert "challenger_auc" in model_row


def test_html_report_shows_the_years_and_their_calibration_plot(trained_credit) -> None:
    from training.report import build_report, render_html

    report = build_report(trained_credit)
    page = render_html(trained_credit, report)
    assert "Through the cycle" in page and "<h3>calibration_per_year</h3>" in page
    for row in report["cycle"]["out_of_time"]:
        assert f"<td>out_of_time</td><td>{row['year']}</td>" in page
