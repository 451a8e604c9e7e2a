"""The precomputed file of a (model, snapshot): equal answers, reuse, invalidation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving import precomputed
from serving.settings import Settings
from serving.state import ServingState, build


@pytest.fixture(scope="module")
def model(trained_credit: Any) -> Any:
    return trained_credit.model


@pytest.fixture(scope="module")
def direct(model: Any, snapshot: pd.DataFrame) -> Any:
    return build(model, snapshot)


def test_a_bundle_from_the_precomputed_file_answers_exactly_as_a_computed_one(
    model: Any, snapshot: pd.DataFrame, direct: Any, tmp_path: Path
) -> None:
    path = tmp_path / "snap.parquet"
    snapshot.to_parquet(path)
    written = precomputed.ensure(model, snapshot, path, tmp_path / "pre")
    assert written.source.startswith(str(tmp_path / "pre"))  # read back memory-mapped
    assert isinstance(written.contrib, np.memmap)
    mapped = build(model, snapshot, precomputed=written)
    for usc in list(direct.position)[:: max(1, len(direct.position) // 60)]:
        assert mapped.explanation_payload(usc) == direct.explanation_payload(usc)
    pd.testing.assert_frame_equal(mapped.scores, direct.scores)
    # The reasons read lazily from the contributions equal the model's own reasons.
    assert list(direct.reasons) == model.reasons(snapshot.reset_index(drop=True), top=4)


def test_the_file_is_reused_and_a_changed_snapshot_gets_a_new_one(
    model: Any, snapshot: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "snap.parquet"
    snapshot.to_parquet(path)
    first = precomputed.ensure(model, snapshot, path, tmp_path / "pre")
    again = precomputed.read(tmp_path / "pre", precomputed.cache_key(model, path))
    assert again is not None and again.key == first.key
    changed = snapshot.iloc[:-1]
    changed.to_parquet(path)
    other = precomputed.ensure(model, changed, path, tmp_path / "pre")
    assert other.key != first.key and other.matches(changed, model)
    assert not first.matches(changed, model)
    assert len(list((tmp_path / "pre").iterdir())) == 2


def test_a_damaged_folder_is_recomputed(model: Any, snapshot: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "snap.parquet"
    snapshot.to_parquet(path)
    pre = precomputed.ensure(model, snapshot, path, tmp_path / "pre")
    folder = Path(pre.source)
    (folder / "contrib.npy").write_bytes(b"not numpy")
    assert precomputed.read(tmp_path / "pre", pre.key) is None
    meta = json.loads((folder / "meta.json").read_text())
    fixed = precomputed.ensure(model, snapshot, path, tmp_path / "pre")
    assert fixed.matches(snapshot, model) and meta["firms"] == len(snapshot)


def test_serving_state_writes_then_maps_the_file(
    svc_settings_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(database_url="sqlite://", precompute_dir=tmp_path, **svc_settings_kwargs)
    first = ServingState().load(settings)
    assert len(list(tmp_path.iterdir())) == 1
    second = ServingState().load(settings)
    assert isinstance(second.contrib, np.memmap)
    usc = next(iter(first.position))
    assert second.score_payload(usc) == first.score_payload(usc)
