"""MLflow registry: logging, the promotion gate, rollback, export and loading back."""

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from training.model import CreditModel
from training.registry import (
    MODEL_NAME,
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
    # models/README.md describes exactly this layout
    readme = (Path(__file__).resolve().parents[2] / "models" / "README.md").read_text("utf-8")
    assert f"models/{MODEL_NAME}/" in readme and package.name == NAME
    assert all(f"`{p.name}`" in readme for p in package.iterdir())
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


def test_registered_pyfunc_carries_its_code_and_plots(
    trained_credit, mlflow_tracking_uri, tmp_path
):
    """A fresh process in another folder, without this checkout on its path, loads and scores
    the registered model from the code logged with it; the plots are run artifacts of their own."""
    import base64
    import io
    import os
    import subprocess
    import sys

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()
    run_id, version = log_training(
        trained_credit,
        trained_credit.metrics,
        "<html></html>",
        name=NAME,
        tracking_uri=mlflow_tracking_uri,
        figures={"shap_beeswarm": png, "waterfall_0_row 7": png},
    )
    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri)
    assert sorted(a.path for a in client.list_artifacts(run_id, "plots")) == [
        "plots/shap_beeswarm.png",
        "plots/waterfall_0_row_7.png",
    ]
    rows = trained_credit.eval_frame[trained_credit.model.feature_names].head(5)
    for c in trained_credit.model.categorical:
        rows[c] = rows[c].astype(object).astype("string")
    rows.to_parquet(tmp_path / "rows.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import mlflow, pandas as pd, sys\n"
        f"mlflow.set_tracking_uri({mlflow_tracking_uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}/{version}')\n"
        "import training.model\n"
        "print(training.model.__file__)\n"
        f"print(m.predict(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))['pd'].tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module_file, pds = done.stdout.strip().splitlines()[-2:]
    repo = str(Path(__file__).resolve().parents[2])
    assert not module_file.startswith(repo) and "/code/training/model.py" in module_file
    np.testing.assert_allclose(
        eval(pds),
        trained_credit.model.predict_pd(rows.astype({c: object for c in rows})),
        rtol=1e-12,
    )


def test_service_lookup_honours_the_model_alias(trained_credit, mlflow_tracking_uri):
    from serving.settings import Settings
    from serving.state import LoadError, load_model

    _, v1 = _log(trained_credit, mlflow_tracking_uri)
    _, v2 = _log(_worse(trained_credit), mlflow_tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri)
    client.set_registered_model_alias(NAME, "champion", v1)
    client.set_registered_model_alias(NAME, "shadow", v2)
    base = {"mlflow_tracking_uri": mlflow_tracking_uri, "model_name": NAME}
    champ, source = load_model(None, Settings(**base))
    assert source.endswith("@champion") and not champ.version.endswith("-worse")
    shadow, source = load_model(None, Settings(**base, model_alias="shadow"))
    assert source.endswith("@shadow") and shadow.version.endswith("-worse")
    with pytest.raises(LoadError, match="no 'nobody' alias"):
        load_model(None, Settings(**base, model_alias="nobody"))
