"""The one-row path (feature dict -> numpy row -> booster) equals the DataFrame path."""

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def model(trained_credit):
    return trained_credit.model


@pytest.fixture(scope="module")
def rows(snapshot):
    return snapshot.sample(60, random_state=5).reset_index(drop=True)


def test_row_vector_equals_matrix_row_for_every_firm(model, rows):
    x = model.matrix(rows)
    for i, record in enumerate(rows.to_dict("records")):
        np.testing.assert_array_equal(model.row_vector(record), x[i])


def test_row_vector_codes_unseen_and_missing_levels_as_missing(model, rows):
    cat = next(f for f in model.features if f.kind == "category")
    record = rows.iloc[0].to_dict()
    j = model.feature_names.index(cat.name)
    for value in ("no-such-level", None, np.nan):
        record[cat.name] = value
        frame_row = model.matrix(pd.DataFrame([record]))[0]
        fast = model.row_vector(record)
        assert np.isnan(fast[j]) and np.isnan(frame_row[j])
    record[cat.name] = cat.categories[-1]
    assert model.row_vector(record)[j] == len(cat.categories) - 1


def test_row_vector_names_a_missing_feature_and_a_non_numeric_value(model, rows):
    record = rows.iloc[0].to_dict()
    numeric = next(f.name for f in model.features if f.kind == "numeric")
    bad = dict(record, **{numeric: "lots"})
    with pytest.raises(ValueError, match=numeric):
        model.row_vector(bad)
    del record[numeric]
    with pytest.raises(ValueError, match=numeric):
        model.row_vector(record)


def test_score_row_equals_the_dataframe_score_to_1e_12(model, rows):
    frame = model.score(rows)
    for i, record in enumerate(rows.to_dict("records")):
        fast = model.score_row(record)
        for col in ("pd", "log_odds", "score"):
            assert abs(fast[col] - float(frame[col].iat[i])) <= 1e-12 * max(
                1.0, abs(float(frame[col].iat[i]))
            ), col
        assert fast["grade"] == frame["grade"].iat[i]
        assert fast["supervision_class"] == frame["supervision_class"].iat[i]


def test_encode_matches_the_row_vector_of_each_feature(model, rows):
    record = rows.iloc[3].to_dict()
    x = model.row_vector(record)
    for j, name in enumerate(model.feature_names):
        got = model.encode(name, record[name])
        assert (np.isnan(got) and np.isnan(x[j])) or got == x[j], name


def test_row_reasons_equal_the_frame_reasons(model, rows):
    contrib, _ = model.explain(rows)
    x = model.matrix(rows)
    expected = model.reasons(rows, top=4, contrib=contrib)
    assert any(expected)  # some firm has an adverse reason
    for i in range(len(rows)):
        assert model.row_reasons(contrib[i], x[i], top=4) == expected[i]
