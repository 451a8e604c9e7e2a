"""explain_batch: chunks and Dask partitions give the model's own log-odds and contributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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
