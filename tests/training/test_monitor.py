"""Monitoring and backtesting: the per-grade tests, traffic lights, PSI, verdict, CLI and MLflow.

The shocked and stable worlds here are synthetic outcome frames on the shared small world's
snapshots: every period's rows (copied ``COPIES`` times under new firm codes, so outcomes are
independent draws) are scored by a model trained on that world, and defaults are drawn with
probability ``model PD x multiplier``. In the stable world the multiplier is 1, so the model is
calibrated by construction and every red light is a false positive; in the shocked world the
multiplier is ``SHOCK`` in the last as-of year, which the model (trained before it) cannot know.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from training.monitor import (
    MonitorConfig,
    binomial_pvalue,
    jeffreys_pvalue,
    load_monitor_config,
    monitor,
    traffic_light,
)

COPIES = 4
SHOCK = 3.0
SEED = 20


# ---------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(
    ("d", "n", "p"), [(0, 50, 0.02), (3, 100, 0.01), (12, 400, 0.02), (40, 40, 0.5)]
)
def test_binomial_pvalue_matches_scipy_binomtest(d: int, n: int, p: float) -> None:
    expected = stats.binomtest(d, n, p, alternative="greater").pvalue
    assert binomial_pvalue(d, n, p) == pytest.approx(expected, rel=1e-10)


def test_binomial_pvalue_known_values() -> None:
    assert binomial_pvalue(0, 10, 0.3) == 1.0
    assert binomial_pvalue(1, 1, 0.3) == pytest.approx(0.3)
    assert binomial_pvalue(2, 2, 0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="defaults"):
        binomial_pvalue(5, 3, 0.1)


@pytest.mark.parametrize(("d", "n", "p"), [(0, 200, 0.01), (4, 150, 0.01), (30, 500, 0.05)])
def test_jeffreys_pvalue_is_the_posterior_mass_below_the_pd(d: int, n: int, p: float) -> None:
    # integrate the Jeffreys posterior density Beta(d + 1/2, n - d + 1/2) from 0 to the PD
    a, b = d + 0.5, n - d + 0.5
    mass, _ = integrate.quad(lambda t: stats.beta.pdf(t, a, b), 0, p, limit=200)
    assert jeffreys_pvalue(d, n, p) == pytest.approx(mass, rel=1e-6)


def test_jeffreys_pvalue_at_the_interval_bound_is_alpha() -> None:
    # a PD at the lower bound of the one-sided 99 % Jeffreys interval has p-value exactly 1 %,
    # and a PD above the interval's upper bound cannot be rejected
    lower = stats.beta.ppf(0.01, 7 + 0.5, 300 - 7 + 0.5)
    upper = stats.beta.ppf(0.99, 7 + 0.5, 300 - 7 + 0.5)
    assert jeffreys_pvalue(7, 300, lower) == pytest.approx(0.01, rel=1e-8)
    assert jeffreys_pvalue(7, 300, upper) == pytest.approx(0.99, rel=1e-8)


def test_traffic_light_bands() -> None:
    lights = load_monitor_config().traffic_lights
    assert traffic_light(0.2, lights) == "green"
    assert traffic_light(0.03, lights) == "yellow"
    assert traffic_light(0.004, lights) == "red"


def test_monitor_config_is_validated(tmp_path) -> None:
    bad = load_monitor_config().model_dump()
    bad["traffic_lights"]["red_confidence"] = 0.9
    path = tmp_path / "monitor.yaml"
    import yaml

    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="red_confidence"):
        load_monitor_config(path)


# ---------------------------------------------------------------------------- synthetic worlds
def _world(
    trained_credit, shocked_year: int | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Snapshots, outcomes and observed-to date of a synthetic outcome world."""
    model = trained_credit.model
    data = pd.concat([trained_credit.train_frame, trained_credit.eval_frame], ignore_index=True)
    base = data.drop(columns=["label", "default_date", "pd", "challenger_pd"], errors="ignore")
    rng = np.random.default_rng(SEED)
    snaps, events = [], []
    for k in range(COPIES):
        snap = base.assign(usc_code=base["usc_code"] + f"-{k}-" + base["as_of"].astype(str))
        p = model.predict_pd(snap)
        year = pd.to_datetime(snap["as_of"]).dt.year.to_numpy()
        mult = np.where(year == shocked_year, SHOCK, 1.0)
        hit = rng.uniform(size=len(snap)) < np.minimum(p * mult, 1.0)
        months = rng.integers(1, 12, size=len(snap))
        dd = pd.to_datetime(snap["as_of"]) + pd.to_timedelta(months * 30, unit="D")
        events.append(pd.DataFrame({"usc_code": snap["usc_code"][hit], "default_date": dd[hit]}))
        snaps.append(snap)
    snapshots = pd.concat(snaps, ignore_index=True)
    observed_to = pd.to_datetime(snapshots["as_of"]).max() + pd.DateOffset(months=12)
    return snapshots, pd.concat(events, ignore_index=True), observed_to


def _poisson_binomial_quantile(probs: list[float], q: float) -> int:
    """Quantile of a sum of independent Bernoulli(probs) (exact convolution)."""
    dist = np.array([1.0])
    for p in probs:
        dist = np.convolve(dist, [1 - p, p])
    return int(np.searchsorted(np.cumsum(dist), q))


def _red_size(n: int, pd_: float, cfg: MonitorConfig) -> float:
    """Exact probability that a correct PD turns red: P(test p-value < 1 - red_confidence)."""
    ds = np.arange(n + 1)
    if cfg.traffic_lights.light_test == "jeffreys":
        pvalues = stats.beta.cdf(pd_, ds + 0.5, n - ds + 0.5)
    else:
        pvalues = stats.binom.sf(ds - 1, n, pd_)
    red = pvalues < 1 - cfg.traffic_lights.red_confidence
    return float(stats.binom.pmf(ds, n, pd_)[red].sum())


def test_stable_world_flags_no_more_reds_than_the_tests_false_positive_rate(trained_credit) -> None:
    cfg = load_monitor_config()
    snapshots, events, seen_to = _world(trained_credit, None)
    report = monitor(trained_credit.model, snapshots, events, seen_to, config=cfg)
    cells = [g for p in report["periods"] if p["complete"] for g in p["grades"] if g["light"]]
    assert len(cells) >= 40  # enough tests for the bound to mean something
    # How the allowance is picked: each cell's exact red probability under a correct PD (its
    # test's size at its own n and PD, which for the Jeffreys test in low-default grades exceeds
    # the nominal 1 %), and the 99.9 % quantile of the number of reds those sizes imply. A
    # monitor whose lights fire only at their stated rates fails this at most 0.1 % of the time.
    sizes = [_red_size(g["n"], g["mean_pd"], cfg) for g in cells]
    allowed = _poisson_binomial_quantile(sizes, 0.999)
    reds = sum(g["light"] == "red" for g in cells)
    print(
        f"stable world: {reds} red of {len(cells)} grade tests; expected {sum(sizes):.2f}, allowed {allowed}"
    )
    assert reds <= allowed, (reds, allowed, sum(sizes))
    assert all(p["portfolio"]["light"] != "red" for p in report["periods"] if p["complete"])
    assert report["verdict"]["code"] == "fine", report["verdict"]


def test_shocked_year_turns_its_grades_red(shocked_cli_run) -> None:
    report, _, last_year = shocked_cli_run
    shocked = [p for p in report["periods"] if p["as_of"].startswith(str(last_year))]
    calm = [p for p in report["periods"] if not p["as_of"].startswith(str(last_year))]
    assert shocked and calm
    for p in shocked:
        assert p["portfolio"]["light"] == "red"
        big = [g for g in p["grades"] if g["light"] and g["expected_defaults"] >= 5]
        assert big
        # a 3x shock on >= 5 expected defaults is red unless the draw is unusually low
        assert sum(g["light"] == "red" for g in big) >= 0.8 * len(big), p["grades"]
    assert all(p["portfolio"]["light"] != "red" for p in calm)
    assert report["verdict"]["code"] == "recalibrate"
    assert any(r["key"] == "monitor.reason.red" for r in report["verdict"]["reasons"])


def test_verdict_retrain_when_the_ranking_breaks(trained_credit) -> None:
    # outcomes unrelated to the model's PD in the last year: AUC near 0.5, ranking lost
    snapshots, _, seen_to = _world(trained_credit, None)
    rng = np.random.default_rng(3)
    hit = rng.uniform(size=len(snapshots)) < 0.05
    events = pd.DataFrame(
        {
            "usc_code": snapshots["usc_code"][hit],
            "default_date": pd.to_datetime(snapshots["as_of"][hit]) + pd.Timedelta(days=90),
        }
    )
    report = monitor(trained_credit.model, snapshots, events, seen_to)
    assert report["verdict"]["code"] == "retrain"
    assert any(r["key"] == "monitor.reason.auc" for r in report["verdict"]["reasons"])


def test_incomplete_periods_are_scored_but_not_backtested(trained_credit) -> None:
    snapshots, events, seen_to = _world(trained_credit, None)
    cut = seen_to - pd.DateOffset(months=6)
    report = monitor(trained_credit.model, snapshots, events, cut)
    last = report["periods"][-1]
    assert not last["complete"] and "grades" not in last and last["psi"]["score"] >= 0
    assert report["periods"][0]["complete"]


# ---------------------------------------------------------------------------- CLI and MLflow
@pytest.fixture(scope="module")
def shocked_cli_run(trained_credit, trained_model_dir, tmp_path_factory):
    """``kuaxin monitor`` on the shocked world: (monitor.json, CLI result, shocked year)."""
    from typer.testing import CliRunner

    from kuaxin.cli import app

    tmp = tmp_path_factory.mktemp("monitor")
    last_year = int(pd.to_datetime(trained_credit.eval_frame["as_of"]).dt.year.max())
    snapshots, events, seen_to = _world(trained_credit, last_year)
    snapshots.to_parquet(tmp / "snaps.parquet")
    events.to_parquet(tmp / "outcomes.parquet")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    args = [
        "monitor",
        "--model",
        str(trained_model_dir),
        "--snapshots",
        str(tmp / "snaps.parquet"),
        "--outcomes",
        str(tmp / "outcomes.parquet"),
        "--observed-to",
        str(seen_to.date()),
        "--out",
        str(tmp / "monitor"),
        "--tracking-uri",
        uri,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp / "monitor" / "monitor.json").read_text())
    return report, (result, tmp, uri), last_year


def test_kuaxin_monitor_cli_writes_report_and_logs_to_mlflow(
    shocked_cli_run, trained_credit
) -> None:
    from mlflow import MlflowClient

    report, (result, tmp, uri), _ = shocked_cli_run
    assert "Recalibrate" in result.output
    page = (tmp / "monitor" / "report.html").read_text()
    assert report["verdict"]["code"] == "recalibrate"
    assert "traffic_lights" in page and "data:image/png;base64" in page
    assert report["verdict"]["zh"] in page
    run = MlflowClient(uri).get_run(report["run_id"])
    assert run.data.tags["model_version"] == trained_credit.model.version
    assert run.data.tags["verdict"] == "recalibrate"
    assert run.data.metrics["summary.red_grades"] == report["summary"]["red_grades"] > 0
    history = MlflowClient(uri).get_metric_history(report["run_id"], "auc")
    assert len(history) == sum(p["auc"] is not None for p in report["periods"])


def test_kuaxin_monitor_cli_rejects_bad_input(tmp_path, trained_model_dir) -> None:
    from typer.testing import CliRunner

    from kuaxin.cli import app

    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--model",
            str(trained_model_dir),
            "--snapshots",
            str(tmp_path / "none.parquet"),
            "--no-log",
        ],
    )
    assert result.exit_code == 1
    assert "snapshots" in result.output and "does not exist" in result.output


def test_monitor_of_the_registered_champion_tags_its_version(
    trained_credit, mlflow_tracking_uri, tmp_path
) -> None:
    from mlflow import MlflowClient

    from training.monitor_cli import run_monitor
    from training.registry import log_training, promote

    name = "kuaxin-monitor-test"
    _, version = log_training(
        trained_credit,
        trained_credit.metrics,
        "<html></html>",
        name=name,
        tracking_uri=mlflow_tracking_uri,
    )
    promote(name, tracking_uri=mlflow_tracking_uri)
    snaps = trained_credit.eval_frame.drop(columns=["pd", "challenger_pd"])
    snaps.to_parquet(tmp_path / "snaps.parquet")
    report = run_monitor(
        f"models:/{name}@champion",
        tmp_path / "snaps.parquet",
        None,  # no outcomes yet: scores and drift only
        tmp_path / "out",
        tracking_uri=mlflow_tracking_uri,
        progress=False,
    )
    assert report["model_registry"]["registered_version"] == version
    assert report["summary"]["complete_periods"] == 0
    assert report["verdict"]["reasons"][-1]["key"] == "monitor.reason.no_outcomes"
    tags = MlflowClient(mlflow_tracking_uri).get_model_version(name, version).tags
    assert tags["monitor_verdict"] == report["verdict"]["code"]
    assert tags["monitor_run_id"] == report["run_id"]
