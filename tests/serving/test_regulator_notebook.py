"""The measure-19 policy-simulation notebook runs end to end on the shared small world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "policy_simulation.ipynb"


def test_policy_simulation_notebook_runs(
    snapshot: pd.DataFrame,
    trained_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"
    snap = tmp_path / "snapshot.parquet"
    snapshot.to_parquet(snap)
    monkeypatch.setenv("KUAXIN_SNAPSHOT", str(snap))
    monkeypatch.setenv("KUAXIN_MODEL_DIR", str(trained_model_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors: list[Any] = [
        o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, errors
    text = "".join(
        str(o.get("text", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )
    assert "firms covered" in text and "expected loss change" in text
    assert "more cover under the same VaR" in text and "claims ratio" in text
