"""Feature building sharded by firm on a ``dask.distributed`` cluster (DESIGN.md "Scale").

Firms are assigned to partitions by a stable hash of ``usc_code`` (CRC-32, the same in every
process and Python version). Each partition reads only its firms' rows of every clean table
(Parquet ``usc_code in [...]`` filters pushed into pyarrow, file by file in part order) and runs
the unchanged pandas code, :func:`features.snapshot.build_snapshot` or
:func:`features.dataset.build_dataset`, on a worker process. The client concatenates the
partitions and orders the rows as the pandas path does, so the result is identical to it.

Why sharding by firm gives the pandas result exactly:

- every feature is a function of one firm's own rows (``features.feature_builders`` aggregates
  by firm id with ``bincount`` and group-bys); the visible months come from the configuration,
  not from the data, so no statistic is taken over the population;
- a firm's rows keep their relative order (filters keep file order, parts are read in order),
  so per-firm floating-point sums add the same numbers in the same order;
- the integer codes that ``prepare`` gives destinations, stores and warehouse countries
  (``pandas.factorize``) differ between partitions, but they only group rows within a firm
  (first-appearance order, ``nunique``), so the features do not depend on them;
- labels (``default_events``) are per firm.

Differences that do not touch the output, documented rather than reproduced: the censoring
warning of ``build_dataset`` (outcome window past the last observed repayment month) is judged
per partition on the workers, and rows naming a firm missing from the ``firms`` table are not
read by any partition, so the pandas path's "rows name firms missing" warning is not emitted.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.catalog import Catalog
from features.feature_builders import NEEDED_COLUMNS
from features.io import part_files
from features.tables import TABLES

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

#: Sort keys of the pandas path's output (``build_snapshot`` / ``build_dataset``).
SNAPSHOT_ORDER = ["usc_code"]
DATASET_ORDER = ["as_of", "usc_code"]


# --------------------------------------------------------------------------- sharding
def partition_of(codes: Sequence[str] | pd.Series, n_partitions: int) -> np.ndarray:
    """Partition number of each firm: CRC-32 of its ``usc_code`` modulo ``n_partitions``.

    Parameters
    ----------
    codes : sequence of str or pandas.Series
        Unified social credit codes.
    n_partitions : int
        Number of partitions (>= 1).

    Returns
    -------
    numpy.ndarray of int64
        One partition number in ``[0, n_partitions)`` per code; stable across processes,
        runs and Python versions (unlike ``hash``).
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1; got {n_partitions}")
    return np.fromiter(
        (zlib.crc32(str(c).encode("utf-8")) % n_partitions for c in codes),
        dtype=np.int64,
        count=len(codes),
    )


def firm_partitions(clean_dir: str | Path, n_partitions: int) -> list[list[str]]:
    """Split the firms of a clean folder into partitions by :func:`partition_of`.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables; must hold ``firms``.
    n_partitions : int
        Number of partitions.

    Returns
    -------
    list of list of str
        The ``usc_code`` values of each non-empty partition, sorted.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``firms`` table.
    """
    files = part_files(clean_dir, "firms")
    if not files:
        raise FileNotFoundError(f"{Path(clean_dir) / 'firms'}: no firms table in {clean_dir}")
    codes = pd.concat(
        [pd.read_parquet(f, columns=["usc_code"])["usc_code"] for f in files], ignore_index=True
    ).astype("str")
    part = partition_of(codes, n_partitions)
    groups = [sorted(codes[part == k].tolist()) for k in range(n_partitions)]
    return [g for g in groups if g]


def read_partition(clean_dir: str | Path, codes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Read the rows of ``codes``' firms from every clean table present.

    The filter is pushed into the Parquet reader, so a worker holds only its firms' rows;
    parts are read in order and filtering keeps row order, as ``features.io.read_table`` does.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    codes : sequence of str
        Firms of the partition.

    Returns
    -------
    dict of str to pandas.DataFrame
        The columns the features need (``NEEDED_COLUMNS``) of each table present.
    """
    wanted = list(codes)
    out: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        files = part_files(clean_dir, name)
        if not files:
            continue  # absent tables count as empty, as in the pandas path
        frames = [
            pd.read_parquet(
                f, columns=NEEDED_COLUMNS.get(name), filters=[("usc_code", "in", wanted)]
            )
            for f in files
        ]
        out[name] = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return out


# --------------------------------------------------------------------------- worker tasks
def _snapshot_part(clean_dir: str, codes: list[str], as_of: date) -> pd.DataFrame:
    """Snapshot of one partition's firms (runs on a worker)."""
    from features.snapshot import build_snapshot

    return build_snapshot(read_partition(clean_dir, codes), as_of)


def _dataset_part(
    clean_dir: str, codes: list[str], start: date, end: date, every: str
) -> pd.DataFrame:
    """Training set rows of one partition's firms (runs on a worker)."""
    from features.dataset import build_dataset

    return build_dataset(read_partition(clean_dir, codes), start, end, every)


# --------------------------------------------------------------------------- cluster
@contextmanager
def local_client(n_workers: int = 2, memory_limit: str | None = None) -> Iterator[Client]:
    """Start a local cluster of worker processes (one thread each) and yield its client.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    memory_limit : str, optional
        Per-worker memory limit (dask's default: the machine's memory split among workers).

    Yields
    ------
    distributed.Client
        Closed with its cluster on exit.
    """
    from distributed import Client, LocalCluster

    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1; got {n_workers}")
    kwargs: dict[str, Any] = {"memory_limit": memory_limit} if memory_limit else {}
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # the scheduler's HTTP routes (health, metrics) still open a port: any free one
            scheduler_kwargs={"dashboard_address": ":0"},
            **kwargs,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run_sharded(
    client: Client,
    func: Callable[..., pd.DataFrame],
    partitions: list[list[str]],
    args: tuple[Any, ...],
    progress: bool,
    desc: str,
) -> list[pd.DataFrame]:
    """Submit ``func(clean_dir, codes, *args)`` per partition; results in partition order."""
    from distributed import as_completed

    futures = [client.submit(func, args[0], codes, *args[1:], pure=False) for codes in partitions]
    try:
        for _ in tqdm(
            as_completed(futures), total=len(futures), desc=desc, unit="part", disable=not progress
        ):
            pass
        return client.gather(futures)
    finally:
        for f in futures:
            f.release()


def _combine(frames: list[pd.DataFrame], order: list[str], catalog: Catalog | None) -> pd.DataFrame:
    """Concatenate partition results in the pandas path's row order and dtypes."""
    from features.snapshot import default_catalog

    non_empty = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(non_empty, ignore_index=True)
    out = out.sort_values(order, kind="stable").reset_index(drop=True)
    for spec in catalog or default_catalog():  # concat keeps categories only when identical
        if spec.dtype == "category":
            out[spec.name] = pd.Categorical(out[spec.name], categories=spec.categories)
    return out


def _n_parts(client: Client, n_partitions: int | None) -> int:
    """Default partitions: one per worker thread (each partition pays the fixed setup once)."""
    if n_partitions is not None:
        if n_partitions < 1:
            raise ValueError(f"n_partitions must be >= 1; got {n_partitions}")
        return n_partitions
    return max(1, sum(client.nthreads().values()))


# --------------------------------------------------------------------------- public API
def build_snapshot_dask(
    clean_dir: str | Path,
    as_of: date,
    client: Client | None = None,
    n_workers: int = 2,
    n_partitions: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Build the snapshot at ``as_of`` sharded by firm; equal to the pandas ``build_snapshot``.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables (``CLEAN/<table>/part-*.parquet``).
    as_of : datetime.date
        Snapshot date.
    client : distributed.Client, optional
        Cluster to use; by default a :func:`local_client` of ``n_workers`` is started and
        closed.
    n_workers : int
        Worker processes of the local cluster (ignored with ``client``).
    n_partitions : int, optional
        Firm partitions (default: one per worker thread).
    progress : bool
        Show a progress bar over partitions.

    Returns
    -------
    pandas.DataFrame
        As :func:`features.snapshot.build_snapshot` on the whole folder.
    """
    from features.snapshot import _as_date

    when = _as_date(as_of)
    if client is None:
        with local_client(n_workers) as own:
            return build_snapshot_dask(clean_dir, when, own, n_workers, n_partitions, progress)
    parts = firm_partitions(clean_dir, _n_parts(client, n_partitions))
    frames = _run_sharded(
        client, _snapshot_part, parts, (str(clean_dir), when), progress, "snapshot partitions"
    )
    return _combine(frames, SNAPSHOT_ORDER, None)


def build_dataset_dask(
    clean_dir: str | Path,
    start: date,
    end: date,
    every: str = "quarter",
    client: Client | None = None,
    n_workers: int = 2,
    n_partitions: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Build the labelled training set sharded by firm; equal to the pandas ``build_dataset``.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    start, end : datetime.date
        First and last as-of date.
    every : {"month", "quarter"}
        Spacing of as-of dates.
    client : distributed.Client, optional
        Cluster to use; by default a local cluster of ``n_workers`` is started and closed.
    n_workers : int
        Worker processes of the local cluster (ignored with ``client``).
    n_partitions : int, optional
        Firm partitions (default: one per worker thread).
    progress : bool
        Show a progress bar over partitions.

    Returns
    -------
    pandas.DataFrame
        As :func:`features.dataset.build_dataset` on the whole folder.
    """
    from features.dataset import as_of_dates

    as_of_dates(start, end, every)  # validate on the client: one clear error, not one per worker
    if client is None:
        with local_client(n_workers) as own:
            return build_dataset_dask(
                clean_dir, start, end, every, own, n_workers, n_partitions, progress
            )
    parts = firm_partitions(clean_dir, _n_parts(client, n_partitions))
    frames = _run_sharded(
        client,
        _dataset_part,
        parts,
        (str(clean_dir), start, end, every),
        progress,
        "dataset partitions",
    )
    return _combine(frames, DATASET_ORDER, None)


def build_snapshot_file_dask(
    clean_dir: str | Path, as_of: date, out: str | Path, n_workers: int = 2
) -> Path:
    """Build the snapshot on a local cluster of ``n_workers`` and write it as Parquet.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    as_of : datetime.date
        Snapshot date.
    out : str or Path
        Parquet file to write (parent folders are created).
    n_workers : int
        Worker processes.

    Returns
    -------
    Path
        The file written.
    """
    if not part_files(clean_dir, "firms"):  # fail before paying for a cluster
        raise FileNotFoundError(f"{Path(clean_dir) / 'firms'}: no firms table in {clean_dir}")
    snap = build_snapshot_dask(clean_dir, as_of, n_workers=n_workers, progress=True)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    snap.to_parquet(path, index=False)
    log.info(
        "snapshot at %s on %d workers: %d firms, %d features → %s",
        as_of,
        n_workers,
        len(snap),
        snap.shape[1] - 3,
        path,
    )
    return path


__all__ = [
    "build_dataset_dask",
    "build_snapshot_dask",
    "build_snapshot_file_dask",
    "firm_partitions",
    "local_client",
    "partition_of",
    "read_partition",
]
