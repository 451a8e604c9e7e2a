"""Any labelled table: reading, preparing or refusing columns, the nested CV protocol, seed
bagging and the scorecard blend (exact additive SHAP), the time-split protocol through the CLI.

Real tables ship in ``tests/data`` (see its README); the full Polish nested run is a benchmark.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kuaxin.cli import app
from training.bagging import fit_bagged, merge_boosters, truncate
from training.blend import Scorecard
from training.boosting import LGB_DEFAULTS, fit_booster, lgb_params
from training.model import CreditModel, features_from_catalog
from training.result import _stub
from training.scale import load_config
from training.table import free_workers, train_table
from training.table_prep import TableError, prepare_table, read_table
from training.table_search import (
    Fit,
    _inner,
    _run_candidates,
    ensemble_booster,
    fold_mean_auc,
    search_table,
    select_ensemble,
)
from training.train import time_split

DATA = Path(__file__).resolve().parents[1] / "data"
POLISH = DATA / "polish_bankruptcy_year1.csv.gz"
GERMAN = DATA / "german_credit.csv.gz"


def _table(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "firm": [f"F{i:05d}" for i in range(n)],
            "when": pd.to_datetime(
                rng.choice(pd.date_range("2020-01-01", periods=10, freq="QS"), n)
            ),
            "x1": rng.normal(size=n),
            "x2": rng.exponential(size=n),
            "noise": rng.normal(size=n),
            "kind": rng.choice(["a", "b", "c"], n),
        }
    )
    df.loc[rng.random(n) < 0.1, "x2"] = np.nan
    lo = (
        -2.5
        + 1.3 * df["x1"]
        + 0.8 * np.sin(3 * df["x1"])
        + 0.7 * (df["kind"] == "a")
        + 0.4 * df["x2"].fillna(1)
    )
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-lo))).astype(int)
    return df


def _quick(cfg=None, inner=2, rounds=150):
    """The shipped configuration made small: 2 inner folds, few rounds, no time budget."""
    cfg = cfg or load_config()
    t = cfg["table"]
    cfg["table"] = {
        **t,
        "inner_folds": inner,
        "bagging_seeds": 2,
        "budget_seconds": None,
        "workers": 1,
        "search": {**t["search"], "max_rounds": rounds, "early_stopping_rounds": 20},
    }
    return cfg


def test_read_table_treats_missing_markers_as_missing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,class\n1.5,?,x,0\n?,2,NA,1\n,3, ,0\n")
    df = read_table(path)
    assert df["a"].isna().tolist() == [False, True, True] and df["b"].dtype == float
    assert df["c"].isna().tolist() == [False, True, True]
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"a": ["1", "?", "NA"], "class": [0, 1, 0]}).to_parquet(pq)
    assert read_table(pq)["a"].isna().tolist() == [False, True, True]
    with pytest.raises(FileNotFoundError, match="must exist"):
        read_table(tmp_path / "nope.csv")
    polish = read_table(POLISH)
    assert polish.shape == (7027, 65) and polish["Attr37"].isna().mean() > 0.3


def test_time_split_is_ordered():
    times = pd.Series(pd.date_range("2020-01-01", periods=10, freq="QS").repeat(3))
    tr, va, te = time_split(times, 0.25, 0.2)
    assert times[tr].max() < times[va].min() and times[va].max() < times[te].min()
    assert (tr | va | te).all() and not (tr & va).any() and not (va & te).any()
    with pytest.raises(ValueError, match="at least 3 distinct dates"):
        time_split(pd.Series(pd.to_datetime(["2020-01-01", "2020-04-01"])), 0.25, 0.2)


def test_table_shapes_are_converted_dropped_or_refused_by_name():
    cfg = load_config()
    n = 300
    df = _table(n).assign(
        ref=[f"R{i}" for i in range(n)],  # a row id nobody declared
        opened=pd.date_range("2015-01-01", periods=n, freq="D").astype(str),
        amount=[f"{1000 + i:,}" for i in range(n)],  # numbers written as text
        same=1,
        free_text=[f"note {i % 120}" for i in range(n)],
    )
    frame, names, y, notes = prepare_table(df, "y", cfg, id_col="firm", time_col="when")
    actions = {x["column"]: x["action"] for x in notes}
    assert actions["ref"] == "dropped" and actions["same"] == "dropped"
    assert actions["free_text"] == "dropped" and actions["opened"] == "converted to opened_days"
    assert actions["amount"] == "read as numbers" and frame["amount"].iloc[1] == 1001.0
    assert "firm" not in names and "when" not in names and "opened_days" in names
    assert frame["kind"].dtype == object and len(y) == n

    with pytest.raises(TableError, match="'missing_col'"):
        prepare_table(df, "missing_col", cfg)
    with pytest.raises(TableError, match="target kind must be 0/1"):
        prepare_table(df, "kind", cfg)
    with pytest.raises(TableError, match="target kind has no value 'z'"):
        prepare_table(df, "kind", cfg, positive="z")
    holes = df.assign(y=df["y"].astype(float).where(df.index > 3))
    with pytest.raises(TableError, match="target y must have no missing values"):
        prepare_table(holes, "y", cfg)
    rare = df.assign(y=(df.index < 5).astype(int))
    with pytest.raises(TableError, match="target y has 5 defaults"):
        prepare_table(rare, "y", cfg)
    with pytest.raises(TableError, match="column nope"):
        prepare_table(df, "y", cfg, directions={"nope": 1})
    with pytest.raises(TableError, match="column kind: only numeric"):
        prepare_table(df, "y", cfg, directions={"kind": 1})


def test_merged_bagged_booster_is_the_mean_of_its_members():
    df = _table(800)
    features = features_from_catalog(None, ["x1", "x2", "noise", "kind"], df)
    x, y = _stub(features, load_config(), None).matrix(df), df["y"].to_numpy()
    params = lgb_params(features, {"feature_fraction": 0.7, "bagging_fraction": 0.8}, 3, 1)
    members = [fit_booster(x, y, features, {**params, "seed": 3 + i}, 30) for i in range(3)]
    merged = merge_boosters(members)
    mean = np.mean([m.predict(x, raw_score=True) for m in members], axis=0)
    assert np.abs(merged.predict(x, raw_score=True) - mean).max() < 1e-9
    shap_mean = np.mean([m.predict(x, pred_contrib=True) for m in members], axis=0)
    assert np.abs(merged.predict(x, pred_contrib=True) - shap_mean).max() < 1e-9
    # the same seeds give the same merged model; nothing random means one member
    assert fit_bagged(x, y, features, params, 30, 3).num_trees() == 90
    assert fit_bagged(x, y, features, lgb_params(features, {}, 3, 1), 30, 3).num_trees() == 30


def test_bagged_and_blended_model_explains_its_calibrated_log_odds_exactly(tmp_path):
    df = _table(800)
    features = features_from_catalog(None, ["x1", "x2", "noise", "kind"], df)
    model = _stub(features, load_config(), None)
    x, y = model.matrix(df), df["y"].to_numpy()
    params = lgb_params(features, {"feature_fraction": 0.7, "bagging_fraction": 0.8}, 1, 1)
    model.booster = fit_bagged(x, y, features, params, 40, 4)
    model.linear = Scorecard.fit(x, y, features, weight=0.3)
    model.calibration = {"intercept": -0.2, "slope": 0.9}
    rows = df.head(200)
    for m in (model, CreditModel.load(model.save(tmp_path / "m"))):
        contrib, base = m.explain(rows)
        log_odds = m.score(rows)["log_odds"].to_numpy()
        assert np.abs(contrib.sum(axis=1) + base - log_odds).max() < 1e-9
    # the scorecard's own part is additive too, and it carries weight in the margin
    lin, lin_base = model.linear.contributions(x)
    assert np.abs(lin.sum(axis=1) + lin_base - model.linear.log_odds(x)).max() < 1e-9
    booster_only = model.booster.predict(x, raw_score=True)
    assert np.abs(model.margin_matrix(x) - booster_only).max() > 1e-3


def test_nested_cv_protocol_keeps_defaults_among_the_candidates():
    df = _table()
    r = train_table(df, "y", id_col="firm", config=_quick(), trials=1, folds=3, nested=True)
    m = r.metrics
    assert m["protocol"]["kind"] == "nested_stratified_cv"
    assert "nested" in m["protocol"]["description"] and "headline" in m["protocol"]
    assert m["headline"]["metric"] == "tuned.mean_auc"
    for key in ("defaults", "tuned", "challenger"):
        assert len(m[key]["fold_auc"]) == 3 and 0.6 < m[key]["mean_auc"] <= 1
        assert 0.6 < m[key]["pooled_oof_auc"] <= 1
    assert len(m["fold_params"]) == 3 and len(m["tuned_minus_defaults_by_fold"]) == 3
    assert set(r.trials["outer_fold"]) == {"0", "1", "2", "final"}
    for _, search in r.trials.groupby("outer_fold"):
        defaults = search[search["name"] == "defaults"]
        assert len(defaults) == 1 and int(defaults["rounds"].iloc[0]) == 100
        # the ensemble weights of the chosen configurations sum to one
        assert search["chosen"].sum() >= 1
        assert abs(search["ensemble_weight"].sum() - 1) < 1e-9
    # the choice (ensemble, then blend) is never below the defaults' inner score
    for key, choice in [*zip("012", m["fold_params"], strict=True), ("final", m["final"])]:
        search = r.trials[r.trials["outer_fold"] == key]
        defaults = float(search.loc[search["name"] == "defaults", "value"].iloc[0])
        assert choice["inner_mean_auc"] >= defaults - 1e-12
        assert abs(sum(mb["weight"] for mb in choice["members"]) - 1) < 1e-9
    assert 0 < m["calibrated_oof"]["ece"] < 0.08
    assert "firm" not in r.model.feature_names and "when_days" in r.model.feature_names
    kind = next(f for f in r.model.features if f.name == "kind")
    assert kind.kind == "category" and kind.categories == ["a", "b", "c"]
    reasons = r.model.reasons(df.head(3).assign(when_days=0.0))
    assert all(x["text_en"] == x["feature"] for row in reasons for x in row)


def test_german_credit_with_text_categories_and_a_direction_file(tmp_path):
    """A real bank table: 13 text columns, a good/bad target, monotone amount and duration."""
    directions = tmp_path / "directions.csv"
    directions.write_text("column,direction\nduration_in_month,increases_risk\n")
    out = tmp_path / "german.json"
    cfg_path = tmp_path / "scale.yaml"
    cfg_path.write_text(
        "- {grade: A, upper: 0.1, supervision_class: A}\n"
        "- {grade: B, upper: 0.3, supervision_class: B}\n"
        "- {grade: C, upper: 0.6, supervision_class: C}\n"
        "- {grade: D, upper: 1.0, supervision_class: D}\n"
    )
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--table",
            str(GERMAN),
            "--target",
            "creditability",
            "--positive",
            "bad",
            "--directions",
            str(directions),
            "--master-scale",
            str(cfg_path),
            "--trials",
            "0",
            "--budget-seconds",
            "30",
            "--no-register",
            "--metrics-out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["protocol"]["kind"] == "nested_stratified_cv" and m["rows"] == 1000
    assert m["defaults_in_data"] == 300
    assert m["tuned"]["mean_auc"] > 0.70 and m["challenger"]["mean_auc"] > 0.70
    assert "psi" not in m and "segments" not in m  # no later window, no configured segments
    assert [g["grade"] for g in m["grades"]] == ["A", "B", "C", "D"]
    assert sum(g["n"] for g in m["grades"]) == 1000

    bad = tmp_path / "bad_directions.csv"
    bad.write_text("column,direction\npurpose,increases_risk\n")
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--table",
            str(GERMAN),
            "--target",
            "creditability",
            "--positive",
            "bad",
            "--directions",
            str(bad),
            "--no-register",
        ],
    )
    assert res.exit_code == 1 and "column purpose" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_monotone_direction_is_respected():
    df = _table(1200)
    r = train_table(
        df.drop(columns=["when"]), "y", id_col="firm", config=_quick(), trials=0, folds=2,
        nested=False, directions={"x1": 1},
    )  # fmt: skip
    x1 = next(f for f in r.model.features if f.name == "x1")
    assert x1.monotone == 1
    grid = df.head(1).drop(columns=["when"]).loc[np.repeat(df.index[:1], 50)].copy()
    grid["x1"] = np.linspace(-3, 3, 50)
    assert np.all(np.diff(r.model.margin(grid)) >= -1e-12)


def test_polish_sample_trains_on_the_shipped_table():
    polish = read_table(POLISH)
    sample = pd.concat(
        [polish[polish["class"] == 1], polish[polish["class"] == 0].sample(1500, random_state=0)]
    )
    r = train_table(sample, "class", config=_quick(), trials=0, folds=3, nested=False)
    m = r.metrics
    assert m["defaults_in_data"] == 271 and m["tuned"]["mean_auc"] > 0.85


def test_cli_table_with_time_column_registers_promotes_and_exports(tmp_path, mlflow_tracking_uri):
    path = tmp_path / "bank.parquet"
    _table(5000).to_parquet(path)
    runner = CliRunner()
    uri = ["--tracking-uri", mlflow_tracking_uri, "--name", "bank-model"]
    res = runner.invoke(app, ["train", "--table", str(path), "--target", "nope", *uri])
    assert res.exit_code == 1 and "nope" in res.output and len(res.output.strip().splitlines()) == 1
    out = tmp_path / "m.json"
    res = runner.invoke(
        app,
        [
            "train",
            "--table",
            str(path),
            "--target",
            "y",
            "--id",
            "firm",
            "--time",
            "when",
            "--trials",
            "2",
            "--metrics-out",
            str(out),
            *uri,
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())
    assert metrics["protocol"]["kind"] == "out_of_time"
    assert metrics["registered_version"] == "1"
    assert {"auc", "gini", "ks", "brier", "log_loss", "ece"} <= set(metrics["lightgbm"]["test"])
    # PSI compares the training window with the later test window
    assert metrics["psi"]["score"]["verdict"] in {"stable", "moderate", "significant"}
    assert metrics["psi"]["reference"] == "training rows"
    res = runner.invoke(app, ["promote", *uri])
    assert res.exit_code == 0 and "promoted version 1" in res.output, res.output
    res = runner.invoke(app, ["rollback", *uri])
    assert res.exit_code == 1 and "no 'previous'" in res.output
    res = runner.invoke(app, ["export", "--dest", str(tmp_path / "models"), *uri])
    assert res.exit_code == 0, res.output
    model = CreditModel.load(tmp_path / "models" / "bank-model")
    assert len(model.score(_table(20))) == 20


def _small_search(n=800):
    df = _table(n)
    features = features_from_catalog(None, ["x1", "x2", "noise", "kind"], df)
    x, y = _stub(features, load_config(), None).matrix(df), df["y"].to_numpy()
    return x, y, features, _quick(inner=3)


def test_weighted_merge_is_the_weighted_mean_and_explains_it_exactly():
    x, y, features, _ = _small_search()
    params = lgb_params(features, {"feature_fraction": 0.7, "bagging_fraction": 0.8}, 3, 1)
    members = [fit_booster(x, y, features, {**params, "seed": 3 + i}, 40) for i in range(3)]
    members[2] = truncate(members[2], 25)
    assert members[2].num_trees() == 25
    factors = [0.5, 0.3, 0.2]
    merged = merge_boosters(members, factors)
    mean = sum(f * m.predict(x, raw_score=True) for f, m in zip(factors, members, strict=True))
    assert np.abs(merged.predict(x, raw_score=True) - mean).max() < 1e-9
    shap = sum(f * m.predict(x, pred_contrib=True) for f, m in zip(factors, members, strict=True))
    contrib = merged.predict(x, pred_contrib=True)
    assert np.abs(contrib - shap).max() < 1e-9
    assert np.abs(contrib.sum(axis=1) - merged.predict(x, raw_score=True)).max() < 1e-9
    with pytest.raises(ValueError, match="one factor per booster"):
        merge_boosters(members, [1.0])


def _fit(name, oof):
    return Fit(name, {}, 10, 0.0, np.asarray(oof, dtype=float), [])


def test_ensemble_selection_starts_from_the_best_single_fit_and_never_loses_to_it():
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 200)
    fold_of = rng.permutation(400) % 4
    folds = [(None, np.flatnonzero(fold_of == i)) for i in range(4)]
    signal = y + rng.normal(0, 1.5, 400)
    fits = [_fit("defaults", signal + rng.normal(0, 1, 400)),
            _fit("a", signal + rng.normal(0, 1, 400)),
            _fit("b", signal + rng.normal(0, 1, 400)),
            _fit("noise", rng.normal(0, 1, 400))]  # fmt: skip
    singles = [fold_mean_auc(y, f.oof, folds) for f in fits]
    members, score, margin = select_ensemble(fits, y, folds, 10)
    assert score >= max(singles) and len(members) >= 2  # independent errors: averaging helps
    assert abs(sum(w for _, w in members) - 1) < 1e-12
    assert all(f.name != "noise" for f, _ in members)
    assert abs(fold_mean_auc(y, margin, folds) - score) < 1e-12
    assert select_ensemble(fits, y, folds, 1)[0] == [(fits[int(np.argmax(singles))], 1.0)]
    # anchored: the ensemble starts from the given fit, even a weaker one
    anchored, anchored_score, _ = select_ensemble(fits, y, folds, 10, start=3)
    assert fits[3] in [f for f, _ in anchored] and anchored_score > singles[3]
    assert select_ensemble(fits, y, folds, 1, start=3)[0] == [(fits[3], 1.0)]
    # a tie goes to the first fit (LightGBM's defaults come first)
    tie = [_fit("defaults", signal), _fit("same", signal)]
    assert [f.name for f, _ in select_ensemble(tie, y, folds, 10)[0]] == ["defaults"]


def _member_margin(fit, x):
    if fit.refit is not None:
        return fit.refit.predict(x, raw_score=True)
    return np.mean(
        [b.predict(x, num_iteration=fit.rounds, raw_score=True) for b in fit.boosters], 0
    )


@pytest.mark.parametrize("start", ["defaults", "best"])
def test_fold_bagged_choice_is_its_members_averaged(start):
    x, y, features, cfg = _small_search()
    cfg["table"]["ensemble_start"] = start
    choice = search_table(x, y, features, cfg, trials=2, seconds=None)
    assert choice.booster is not None
    expected = sum(w * _member_margin(f, x) for f, w in choice.members)
    assert np.abs(choice.booster.predict(x, raw_score=True) - expected).max() < 1e-9
    refits = [f for f, _ in choice.members if f.refit is not None]
    if start == "defaults":
        # anchored: the defaults member is the baseline itself (100 rounds on all the rows)
        assert refits and refits[0].name == "defaults" and refits[0].refit.num_trees() == 100
        baseline = fit_booster(x, y, features, lgb_params(features, LGB_DEFAULTS, 42, 1), 100)
        assert np.abs(refits[0].refit.predict(x) - baseline.predict(x)).max() < 1e-12
    else:
        assert not refits
    assert ensemble_booster(choice.members).num_trees() == sum(
        f.refit.num_trees() if f.refit is not None else f.rounds * len(f.boosters)
        for f, _ in choice.members
    )
    assert choice.oof_margin.shape == y.shape and 0.5 < choice.score <= 1


def test_the_outer_folds_baseline_is_the_anchor_not_a_second_fit():
    x, y, features, cfg = _small_search()
    baseline = fit_booster(x, y, features, lgb_params(features, LGB_DEFAULTS, 42, 1), 100)
    choice = search_table(x, y, features, cfg, trials=0, seconds=None, baseline=baseline)
    anchor = next(f for f, _ in choice.members if f.name == "defaults")
    assert anchor.refit is baseline
    # documented candidates beyond the guide's: XGBoost's defaults, run right after LightGBM's
    names = list(cfg["table"]["candidates"])
    assert names[:3] == ["defaults", "defaults_early_stopped", "xgboost_defaults"]
    assert "xgboost_defaults" in set(choice.trials["name"])
    assert choice.fits == []  # the evaluated fits are not kept unless asked for


def test_keep_fits_returns_every_evaluated_configuration_for_the_diagnostic():
    x, y, features, cfg = _small_search()
    choice = search_table(x, y, features, cfg, trials=1, seconds=None, keep_fits=True)
    evaluated = set(choice.trials.loc[choice.trials["value"].notna(), "name"])
    assert {f.name for f in choice.fits} == evaluated
    assert all(any(m is f for f in choice.fits) for m, _ in choice.members)
    assert all(f.oof.shape == y.shape for f in choice.fits)


def test_candidates_with_the_same_parameters_share_one_run_and_the_budget_is_kept():
    x, y, features, cfg = _small_search()
    inner = _inner(x, y, features, cfg, 1)
    fits, rows = [], []
    _run_candidates(inner, cfg["table"]["candidates"], fits, rows, lambda *a: None)
    by_name = {f.name: f for f in fits}
    defaults, early = by_name["defaults"], by_name["defaults_early_stopped"]
    assert defaults.boosters is early.boosters  # one run, read at two rounds
    assert defaults.rounds == 100 and defaults.fixed and not early.fixed
    assert early.score >= defaults.score - 1e-12 or early.rounds > 100
    # a spent budget: the defaults still run their 100 rounds, nothing else runs
    inner.deadline = 0.0
    fits, rows = [], []
    _run_candidates(inner, cfg["table"]["candidates"], fits, rows, lambda *a: None)
    assert [f.name for f in fits] == ["defaults", "defaults_early_stopped"]
    assert fits[0].rounds == 100 and fits[0].boosters[0].num_trees() == 100
    assert {r.get("skipped") for r in rows} == {"time budget spent"}


def test_monotone_list_only_when_a_direction_is_given():
    _, _, features, _ = _small_search()
    assert "monotone_constraints" not in lgb_params(features, {}, 1, 1)
    features[0].monotone = 1
    assert lgb_params(features, {}, 1, 1)["monotone_constraints"] == [1, 0, 0, 0]


def test_free_workers_counts_a_core_busy_only_under_a_whole_core_of_load(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    for load, expected in [(0.0, 2), (0.9, 2), (1.0, 1), (1.7, 1), (5.0, 1)]:
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert free_workers(6) == expected, load
    assert free_workers(1) == 1
