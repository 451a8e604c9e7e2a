"""Model behaviour: monotonicity, explanations, scoring consistency, persistence."""

import numpy as np
import pandas as pd
import pytest

from training.model import CreditModel, ModelFileError


@pytest.fixture(scope="module")
def model(trained_credit):
    return trained_credit.model


@pytest.fixture(scope="module")
def rows(train_dataset):
    return train_dataset.sample(200, random_state=3)


def test_monotone_constraints_come_from_the_catalog(model):
    from features.catalog import load_catalog

    catalog = load_catalog()
    for f in model.features:
        expected = 0 if catalog[f.name].dtype == "category" else catalog[f.name].sign
        assert f.monotone == expected, f.name
    assert sum(1 for f in model.features if f.monotone != 0) > 20


def test_raising_a_risk_raising_feature_never_lowers_pd(model, rows, train_dataset):
    # PD is an increasing function of the margin (positive Platt slope, floor is a max) ...
    assert model.calibration["slope"] > 0
    lo = model.calibrate(np.array([-5.0, -4.0, 1.0]))
    assert np.all(np.diff(model.floor(lo)) >= 0)
    # ... so it suffices that the margin moves with every constrained feature, over a grid.
    base = model.matrix(rows.head(40))
    checked = 0
    for j, f in enumerate(model.features):
        if f.monotone == 0:
            continue
        col = train_dataset[f.name].astype(float)
        grid = np.unique(np.nanquantile(col, np.linspace(0, 1, 15)))
        grid = np.unique(np.concatenate([[col.min() - 1], grid, [col.max() * 2 + 1]]))
        x = np.repeat(base[None, :, :], len(grid), axis=0)
        x[:, :, j] = grid[:, None]
        margin = model.booster.predict(x.reshape(-1, base.shape[1]), raw_score=True)
        steps = np.diff(margin.reshape(len(grid), -1), axis=0) * f.monotone
        assert (steps >= -1e-12).all(), f"{f.name} breaks its monotone constraint"
        checked += 1
    assert checked == sum(1 for f in model.features if f.monotone != 0)
    # and end to end through predict_pd for the constrained features the tests name
    for name in ("max_dpd_12m", "dishonest_listed", "firm_age_months"):
        f = next(f for f in model.features if f.name == name)
        frames = [rows.head(10).assign(**{name: v}) for v in (0.0, 1.0, 30.0, 120.0)]
        pds = np.stack([model.predict_pd(fr) for fr in frames])
        assert (np.diff(pds, axis=0) * f.monotone >= 0).all(), name


def test_contributions_match_shap_and_add_up(model, rows):
    import shap

    rows = rows.head(100)
    contrib, base = model.explain(rows)
    scored = model.score(rows)
    np.testing.assert_allclose(contrib.sum(1) + base, scored["log_odds"], atol=1e-9)
    explainer = shap.TreeExplainer(model.booster)
    sv = np.asarray(explainer.shap_values(model.matrix(rows)))
    slope, intercept = model.calibration["slope"], model.calibration["intercept"]
    np.testing.assert_allclose(sv * slope, contrib, atol=1e-6)
    np.testing.assert_allclose(
        intercept + slope * float(np.ravel(explainer.expected_value)[-1]), base, atol=1e-6
    )
    # PD agrees with the explanation target (above the floor)
    expected_pd = np.maximum(1 / (1 + np.exp(-(contrib.sum(1) + base))), model.pd_floor)
    np.testing.assert_allclose(scored["pd"], expected_pd, rtol=1e-12)


def test_one_row_and_many_row_scoring_agree(model, rows):
    many = model.score(rows)
    one = pd.concat([model.score(rows.iloc[[i]]) for i in range(20)])
    pd.testing.assert_frame_equal(one, many.iloc[:20])
    c_many, b_many = model.explain(rows)
    c_one, b_one = model.explain(rows.iloc[[5]])
    np.testing.assert_array_equal(c_one[0], c_many[5])
    assert b_one[0] == b_many[5]


def test_score_frame_is_consistent(model, rows):
    s = model.score(rows)
    assert list(s.columns) == ["pd", "log_odds", "score", "grade", "supervision_class"]
    assert (s["pd"] >= model.pd_floor).all() and (s["pd"] < 1).all()
    np.testing.assert_allclose(model.score_scale.pd(s["score"].to_numpy()), s["pd"], rtol=1e-9)
    assert (s["grade"] == model.master_scale.grade(s["pd"].to_numpy())).all()
    assert s.index.equals(rows.index)


def test_reasons_are_top_adverse_contributions_with_catalog_texts(model, rows):
    from features.catalog import load_catalog

    catalog = load_catalog()
    contrib, _ = model.explain(rows)
    reasons = model.reasons(rows, top=4)
    assert len(reasons) == len(rows)
    assert any(reasons)
    for i, row in enumerate(reasons):
        assert len(row) <= 4
        values = [r["contribution"] for r in row]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        n_pos = int((contrib[i] > 0).sum())
        assert len(row) == min(4, n_pos)
        for r in row:
            spec = catalog[r["feature"]]
            assert r["text_en"] == spec.reason_en and r["text_zh"] == spec.reason_zh
            j = model.feature_names.index(r["feature"])
            assert r["contribution"] == pytest.approx(contrib[i, j])
            assert r["code"] == f"R{j + 1:03d}"


def test_save_load_gives_identical_outputs(model, rows, tmp_path, trained_model_dir):
    loaded = CreditModel.load(trained_model_dir)
    pd.testing.assert_frame_equal(loaded.score(rows), model.score(rows))
    assert loaded.version == model.version
    assert loaded.master_scale == model.master_scale and loaded.score_scale == model.score_scale
    (tmp_path / "broken").mkdir()
    with pytest.raises(ModelFileError, match=r"must contain booster\.txt"):
        CreditModel.load(tmp_path / "broken")


def test_bad_input_names_the_field(model, rows):
    with pytest.raises(ValueError, match="missing"):
        model.score(rows.drop(columns=[model.feature_names[3]]))
    bad = rows.copy()
    num = next(f.name for f in model.features if f.kind == "numeric")
    bad[num] = bad[num].astype(object)
    bad.iloc[0, bad.columns.get_loc(num)] = "lots"
    with pytest.raises(ValueError, match=num):
        model.score(bad)


def test_unseen_category_is_treated_as_missing(model, rows):
    cat = model.categorical[0]
    a, b = rows.head(5).copy(), rows.head(5).copy()
    a[cat] = "never-seen-level"
    b[cat] = np.nan
    pd.testing.assert_frame_equal(model.score(a), model.score(b))


def test_lightgbm_beats_the_challenger_out_of_time(trained_credit):
    m = trained_credit.metrics
    assert m["protocol"]["kind"] == "out_of_time"
    w = m["protocol"]["windows"]
    assert w["train"][1] < w["validation"][0] <= w["validation"][1] < w["test"][0]
    assert m["lightgbm"]["test"]["auc"] > 0.7
    assert m["lightgbm"]["test"]["ece"] < 0.05
