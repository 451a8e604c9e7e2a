"""explain_batch: chunks and Dask partitions give the model's own log-odds and contributions."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.distributed import local_client
from training.batch import explain_batch
from training.model import CreditModel


def test_chunked_and_dask_explanations_equal_the_model(
    trained_model_dir: Path, snapshot: pd.DataFrame
) -> None:
    model = CreditModel.load(trained_model_dir)
    rows = snapshot.reset_index(drop=True)
    contrib, base = model.explain(rows)
    log_odds = model.score(rows)["log_odds"].to_numpy()
    chunked = explain_batch(model, rows, chunk_size=97)
    with local_client(n_workers=2) as client:
        dask = explain_batch(model, rows, chunk_size=150, client=client)
    for got in (chunked, dask):
        np.testing.assert_array_equal(got[0], log_odds)
        np.testing.assert_array_equal(got[1], contrib)
        np.testing.assert_array_equal(got[2], base)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_start_up_scoring_shows_progress_on_a_terminal_only(
    trained_model_dir: Path, snapshot: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = CreditModel.load(trained_model_dir)
    rows = snapshot.reset_index(drop=True).iloc[:50]
    for terminal, shown in ((False, False), (True, True)):
        err = _Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        explain_batch(model, rows, chunk_size=20, progress=None)
        assert ("explaining" in err.getvalue()) is shown
        assert (f"{len(rows)}/{len(rows)}" in err.getvalue()) is shown
