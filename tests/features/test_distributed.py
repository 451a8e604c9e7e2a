"""The Dask path of feature building gives exactly the pandas path's snapshot and training set.

One local cluster of two worker processes serves the whole module (starting one costs seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from features.distributed import (
    build_dataset_dask,
    build_snapshot_dask,
    firm_partitions,
    local_client,
    partition_of,
    read_partition,
    shard_clean,
    shard_folders,
)
from features.tables import TABLES


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """Two worker processes, one thread each, closed at the end of the module."""
    with local_client(n_workers=2) as c:
        yield c


def _features_app() -> typer.Typer:
    from features.cli import register

    app = typer.Typer()
    register(app)
    return app


def test_partitions_cover_every_firm_once_and_are_stable(clean_tables):
    codes = clean_tables["firms"]["usc_code"].astype("str")
    first = partition_of(codes, 3)
    again = partition_of(list(reversed(codes.tolist())), 3)[::-1]
    assert (first == again).all()  # a firm's partition does not depend on the others
    assert set(first.tolist()) == {0, 1, 2}
    assert ((first >= 0) & (first < 3)).all()


def test_partition_reads_only_and_all_of_its_firms_rows(clean_dir, clean_tables):
    parts = firm_partitions(clean_dir, 3)
    assert sorted(c for p in parts for c in p) == sorted(clean_tables["firms"]["usc_code"])
    seen = {name: 0 for name in clean_tables}
    for codes in parts:
        got = read_partition(clean_dir, codes)
        for name, frame in got.items():
            if not TABLES[name].firm_keyed:  # reference tables are read whole
                assert len(frame) == len(clean_tables[name]), name
                continue
            assert frame["usc_code"].isin(codes).all(), name
            seen[name] += len(frame)
    firms = set(clean_tables["firms"]["usc_code"])
    for name, table in clean_tables.items():
        if TABLES[name].firm_keyed:
            assert seen[name] == int(table["usc_code"].isin(firms).sum()), name


def test_dask_snapshot_equals_pandas_snapshot(clean_dir, snapshot, client):
    as_of = snapshot["as_of"].iloc[0].date()
    # three partitions on two workers: uneven shards, some tables sparse in a shard
    got = build_snapshot_dask(clean_dir, as_of, client=client, n_partitions=3)
    pd.testing.assert_frame_equal(got, snapshot, check_exact=True)


def test_dask_training_set_equals_pandas_training_set(clean_dir, train_dataset, client):
    start = train_dataset["as_of"].min().date()
    end = train_dataset["as_of"].max().date()
    got = build_dataset_dask(clean_dir, start, end, "quarter", client=client)
    pd.testing.assert_frame_equal(got, train_dataset, check_exact=True)
    assert got["label"].sum() > 0  # the comparison covers defaults, not only zeros


@pytest.fixture(scope="module")
def sharded(clean_dir, client, tmp_path_factory) -> Path:
    """The shared world's clean tables split into 3 shard folders."""
    return shard_clean(clean_dir, tmp_path_factory.mktemp("sharded"), 3, client=client)


def test_sharded_folder_gives_the_pandas_snapshot_and_training_set(
    clean_dir, clean_tables, snapshot, train_dataset, client, sharded
):
    shards = shard_folders(sharded)
    assert shards is not None and len(shards) == 3
    assert shard_folders(clean_dir) is None
    # every row of every firm table lands in exactly one shard; reference tables in all
    for name, table in clean_tables.items():
        n = sum(len(pd.read_parquet(d / name)) for d in shards)
        assert n == len(table) * (1 if TABLES[name].firm_keyed else len(shards)), name
    got = build_snapshot_dask(sharded, snapshot["as_of"].iloc[0].date(), client=client)
    pd.testing.assert_frame_equal(got, snapshot, check_exact=True)
    start, end = train_dataset["as_of"].min().date(), train_dataset["as_of"].max().date()
    got = build_dataset_dask(sharded, start, end, "quarter", client=client)
    pd.testing.assert_frame_equal(got, train_dataset, check_exact=True)


def test_features_cli_workers_writes_the_pandas_snapshot(sharded, snapshot, client, tmp_path: Path):
    out = tmp_path / "snap.parquet"
    as_of = snapshot["as_of"].iloc[0].date().isoformat()
    # the command connects to the module's cluster instead of starting its own
    with dask.config.set({"scheduler-address": client.scheduler.address}):
        result = CliRunner().invoke(
            _features_app(),
            ["features", str(sharded), "--as-of", as_of, "--out", str(out), "--workers", "2"],
        )
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), snapshot, check_exact=True)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "-1"], "--workers"),
        (["--as-of", "2024-13-01", "--workers", "2"], "--as-of"),
    ],
)
def test_features_cli_bad_argument_is_one_line_error(clean_dir, tmp_path, args, needle):
    base = ["features", str(clean_dir), "--out", str(tmp_path / "s.parquet")]
    if "--as-of" not in args:
        base += ["--as-of", "2024-07-01"]
    result = CliRunner().invoke(_features_app(), base + args)
    assert result.exit_code != 0
    assert needle in result.output
    assert not (tmp_path / "s.parquet").exists()


def test_dask_snapshot_of_a_folder_without_firms_fails_clearly(tmp_path, client):
    with pytest.raises(FileNotFoundError, match="firms"):
        build_snapshot_dask(tmp_path, pd.Timestamp("2024-07-01").date(), client=client)
