"""The notebooks run end to end on the shared small world."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def dataset_file(train_dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("nb") / "train.parquet"
    train_dataset.to_parquet(path)
    return path


@pytest.mark.parametrize("name", ["exploration.ipynb", "validation_report.ipynb"])
def test_notebook_runs(name, dataset_file, sim_dirs, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs"
    monkeypatch.setenv("KUAXIN_DATASET", str(dataset_file))
    monkeypatch.setenv("KUAXIN_ORACLE", str(sim_dirs[1]))
    monkeypatch.setenv("KUAXIN_TRIALS", "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
