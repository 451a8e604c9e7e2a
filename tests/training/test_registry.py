"""MLflow registry: logging, the promotion gate, rollback, export and loading back."""

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest

from training.model import CreditModel
from training.registry import (
    GateError,
    export,
    load_champion,
    load_version,
    log_training,
    promote,
    rollback,
)
from training.scale import load_config
from training.train import fit_booster, lgb_params

NAME = "kuaxin-test"


def _worse(result):
    """The same model family, crippled: two stumps on the training rows."""
    model = result.model
    x = model.matrix(result.train_frame)
    y = np.asarray(result.train_frame["label"], dtype=int)
    booster = fit_booster(
        x, y, model.features, lgb_params(model.features, {"num_leaves": 2}, 1, 1), 2
    )
    worse = dataclasses.replace(model, booster=booster, version=model.version + "-worse")
    return dataclasses.replace(result, model=worse)


def _log(result, uri):
    return log_training(result, result.metrics, "<html></html>", name=NAME, tracking_uri=uri)


def test_gate_promotion_refusal_rollback_and_export(
    trained_credit, mlflow_tracking_uri, tmp_path, train_dataset
):
    uri = mlflow_tracking_uri
    rows = train_dataset.sample(50, random_state=1)
    with pytest.raises(GateError, match="no versions"):
        promote(NAME, tracking_uri=uri)

    _, v1 = _log(trained_credit, uri)
    first = promote(NAME, tracking_uri=uri)
    assert first["promoted"] and first["candidate"] == v1 and first["champion_before"] is None

    _, v2 = _log(_worse(trained_credit), uri)
    refused = promote(NAME, tracking_uri=uri)
    assert not refused["promoted"] and refused["candidate"] == v2
    assert any("worse than champion" in r for r in refused["reasons"])
    assert refused["candidate_metrics"]["auc"] < refused["champion_metrics"]["auc"]
    assert load_champion(NAME, uri).version == trained_credit.model.version

    _, v3 = _log(trained_credit, uri)  # as good as the champion: may be promoted
    assert promote(NAME, tracking_uri=uri)["promoted"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v3
    assert str(client.get_model_version_by_alias(NAME, "previous").version) == v1

    back = rollback(NAME, uri)
    assert back == {"champion": v1, "demoted": v3}
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v1
    with pytest.raises(GateError, match="no 'previous'"):
        rollback(NAME, uri)

    # the registry, the exported package and the pyfunc give identical outputs
    champion = load_champion(NAME, uri)
    package = export(tmp_path / "models", NAME, uri)
    assert sorted(p.name for p in package.iterdir()) == [
        "booster.txt",
        "catalog.yaml",
        "manifest.json",
        "model.json",
        "registry.json",
    ]
    exported = CreditModel.load(package)  # checks the manifest, registry.json included
    pd.testing.assert_frame_equal(champion.score(rows), exported.score(rows))
    pd.testing.assert_frame_equal(champion.score(rows), trained_credit.model.score(rows))
    np.testing.assert_array_equal(champion.explain(rows)[0], exported.explain(rows)[0])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    # the signature declares categoricals as strings (what a JSON client sends)
    feats = rows[champion.feature_names].copy()
    for c in champion.categorical:
        feats[c] = feats[c].astype(object).astype("string")
    out = pyfunc.predict(feats)
    np.testing.assert_allclose(out["pd"], champion.predict_pd(rows), rtol=1e-12)
    contrib = out[[c for c in out.columns if c.startswith("contrib__")]].to_numpy()
    np.testing.assert_allclose(contrib.sum(1) + out["base"], out["log_odds"], atol=1e-9)
    assert load_version(NAME, version=v2, tracking_uri=uri).version.endswith("-worse")


def test_gate_thresholds_refuse_a_first_model(trained_credit, mlflow_tracking_uri):
    cfg = load_config()
    cfg["gate"] = {**cfg["gate"], "min_auc": 0.999}
    _log(trained_credit, mlflow_tracking_uri)
    decision = promote(NAME, tracking_uri=mlflow_tracking_uri, config=cfg)
    assert not decision["promoted"]
    assert any("min_auc" in r for r in decision["reasons"])
    with pytest.raises(GateError, match="no 'champion'"):
        load_champion(NAME, mlflow_tracking_uri)
