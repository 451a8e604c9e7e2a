"""Batch scoring: chunked pandas path, Dask path (identical results) and ``kuaxin score-batch``.

One local cluster of two worker processes serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from features.distributed import local_client
from training.batch import (
    SCORE_COLUMNS,
    output_columns,
    register,
    score_batch,
    score_batch_dask,
    score_file,
    score_frame,
)
from training.model import CreditModel


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """Two worker processes, one thread each, closed at the end of the module."""
    with local_client(n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> CreditModel:
    return CreditModel.load(trained_model_dir)


@pytest.fixture(scope="module")
def pandas_scores(model: CreditModel, snapshot: pd.DataFrame) -> pd.DataFrame:
    return score_batch(model, snapshot, chunk_size=128)


@pytest.fixture(scope="module")
def snapshot_file(snapshot: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "snapshot.parquet"
    snapshot.to_parquet(path, index=False)
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps "score-batch" a named subcommand
    def _noop() -> None:
        """Do nothing."""

    return app


def test_batch_scores_match_the_model_row_by_row(model, snapshot, pandas_scores):
    assert list(pandas_scores.columns) == output_columns()
    assert len(pandas_scores) == len(snapshot)
    assert (pandas_scores["usc_code"].to_numpy() == snapshot["usc_code"].to_numpy()).all()
    direct = model.score(snapshot)
    # Performing firms carry the model's answer; firms in default the served D (one rule).
    ok = ~pandas_scores["in_default"].to_numpy()
    assert 0 < ok.sum() < len(ok)  # the shared world has both kinds
    for col in SCORE_COLUMNS:
        assert (pandas_scores[col].to_numpy()[ok] == direct[col].to_numpy()[ok]).all(), col
    assert (pandas_scores["model_pd"].to_numpy() == direct["pd"].to_numpy()).all()
    assert (pandas_scores["model_grade"].to_numpy() == direct["grade"].to_numpy()).all()
    assert (pandas_scores.loc[~ok, "pd"] == 1.0).all()
    assert (pandas_scores.loc[~ok, "grade"] == "D").all()
    assert pandas_scores.loc[~ok, "score"].isna().all()
    # reasons: the model's own top reasons for a sample of rows, in order
    rows = snapshot.iloc[[0, len(snapshot) // 2, len(snapshot) - 1]]
    for i, reasons in zip(rows.index, model.reasons(rows), strict=True):
        codes = [r["code"] for r in reasons]
        got = pandas_scores.loc[i, [f"reason_{k}_code" for k in range(1, 5)]].tolist()
        assert got[: len(codes)] == codes
        assert all(pd.isna(g) for g in got[len(codes) :])
    # reasons raise the PD and come in decreasing order
    contrib = pandas_scores[[f"reason_{k}_contribution" for k in range(1, 5)]].to_numpy()
    assert (np.nan_to_num(contrib, nan=1.0) > 0).all()
    assert (np.diff(np.nan_to_num(contrib, nan=-np.inf), axis=1) <= 0).all()


def test_chunk_size_does_not_change_scores(model, snapshot, pandas_scores):
    whole = score_batch(model, snapshot, chunk_size=len(snapshot) + 1)
    pd.testing.assert_frame_equal(whole, pandas_scores, check_exact=True)


def test_scores_read_from_a_file_in_chunks_equal_pandas_scores(model, snapshot_file, pandas_scores):
    got = score_file(model, snapshot_file, chunk_size=97)
    pd.testing.assert_frame_equal(got, pandas_scores, check_exact=True)


def test_dask_scores_equal_pandas_scores(model, snapshot, pandas_scores, client):
    got = score_batch_dask(model, snapshot, client, npartitions=5)
    pd.testing.assert_frame_equal(got, pandas_scores, check_exact=True)


def test_dask_scores_from_a_file_equal_pandas_scores(model, snapshot_file, pandas_scores, client):
    got = score_batch_dask(model, snapshot_file, client, npartitions=3)
    pd.testing.assert_frame_equal(got, pandas_scores, check_exact=True)


def test_score_frame_names_missing_key_column(model, snapshot):
    with pytest.raises(ValueError, match="usc_code"):
        score_frame(model, snapshot.drop(columns=["usc_code"]).head(3))


def test_score_file_names_missing_feature_column(model, snapshot, tmp_path):
    path = tmp_path / "partial.parquet"
    snapshot.drop(columns=[model.feature_names[3]]).to_parquet(path, index=False)
    with pytest.raises(ValueError, match=model.feature_names[3]):
        score_file(model, path)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_cli_writes_every_row_with_the_output_columns(
    trained_model_dir, snapshot_file, snapshot, pandas_scores, tmp_path, suffix
):
    out = tmp_path / f"scores{suffix}"
    result = CliRunner().invoke(
        _app(),
        [
            "score-batch",
            str(snapshot_file),
            "--model-dir",
            str(trained_model_dir),
            "--out",
            str(out),
            "--chunk-size",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(written.columns) == output_columns()
    assert len(written) == len(snapshot)
    assert np.allclose(written["pd"].to_numpy(), pandas_scores["pd"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--out", "{tmp}/s.parquet"], "--model-dir"),
        (["--model-dir", "{model}", "--champion", "--out", "{tmp}/s.parquet"], "--model-dir"),
        (["--model-dir", "{model}", "--out", "{tmp}/s.txt"], "--out"),
        (["--model-dir", "{tmp}", "--out", "{tmp}/s.parquet"], "booster.txt"),
        (["--model-dir", "{model}", "--out", "{tmp}/s.parquet", "--chunk-size", "0"], "chunk"),
    ],
)
def test_cli_bad_argument_is_a_one_line_error(
    trained_model_dir, snapshot_file, tmp_path, args, needle
):
    filled = [a.format(tmp=tmp_path, model=trained_model_dir) for a in args]
    result = CliRunner().invoke(_app(), ["score-batch", str(snapshot_file), *filled])
    assert result.exit_code != 0
    assert needle in result.output
    assert not (tmp_path / "s.parquet").exists()


def test_cli_missing_snapshot_is_a_one_line_error(trained_model_dir, tmp_path):
    result = CliRunner().invoke(
        _app(),
        [
            "score-batch",
            str(tmp_path / "nope.parquet"),
            "--model-dir",
            str(trained_model_dir),
            "--out",
            str(tmp_path / "s.parquet"),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "nope.parquet" in result.output


def test_lightgbm_dask_reaches_the_single_machine_auc(trained_credit, client):
    """Distributed training is close to, not identical with, the single-machine booster."""
    from sklearn.metrics import roc_auc_score

    from training.batch import train_booster_dask
    from training.scale import load_config

    result = trained_credit
    train, test = result.train_frame, result.eval_frame
    booster = train_booster_dask(
        client,
        result.model,
        train,
        train["label"],
        result.params,
        rounds=result.params["rounds"],
        seed=int(load_config()["search"]["seed"]),
    )
    assert booster.num_trees() == result.model.booster.num_trees()
    x_test = result.model.matrix(test)
    auc_dask = roc_auc_score(test["label"], booster.predict(x_test, raw_score=True))
    auc_single = roc_auc_score(test["label"], result.model.margin(test))
    print(f"AUC lightgbm.dask {auc_dask:.4f} vs single machine {auc_single:.4f}")
    assert auc_dask > 0.6
    assert abs(auc_dask - auc_single) < 0.03, (auc_dask, auc_single)


def test_cli_with_workers_writes_the_in_process_scores(
    trained_model_dir, snapshot_file, pandas_scores, client, tmp_path
):
    out = tmp_path / "scores.parquet"
    args = ["score-batch", str(snapshot_file), "--model-dir", str(trained_model_dir)]
    # the command connects to the module's cluster instead of starting its own
    with dask.config.set({"scheduler-address": client.scheduler.address}):
        result = CliRunner().invoke(_app(), [*args, "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), pandas_scores, check_exact=True)
