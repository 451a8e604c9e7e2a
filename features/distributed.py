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

Reading by filter makes every partition decode every Parquet row group of every table (it keeps
only its firms' rows afterwards), so the decoding work grows with the number of partitions.
:func:`shard_clean` pays that once: it writes the clean tables again split into shard folders
by the same hash, and the builders then give each partition its own shard folder.

Differences that do not touch the output, documented rather than reproduced: the censoring
warning of ``build_dataset`` (outcome window past the last observed repayment month) is judged
per partition on the workers, and rows naming a firm missing from the ``firms`` table are not
read by any partition, so the pandas path's "rows name firms missing" warning is not emitted.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
#: Layout of a folder written by :func:`shard_clean`.
SHARDS_FILE = "shards.json"
SHARD_PREFIX = "shard-"


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


class PartitionTables(Mapping[str, pd.DataFrame]):
    """One partition's clean tables, each read on access with the firm filter.

    Like :class:`features.snapshot.CleanTables` nothing is cached, so ``prepare`` holds one
    raw table of the partition at a time.

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    codes : sequence of str
        Firms of the partition.
    """

    def __init__(self, clean_dir: str | Path, codes: Sequence[str]) -> None:
        self.clean_dir = Path(clean_dir)
        self.codes = list(codes)
        self._present = [n for n in TABLES if part_files(self.clean_dir, n)]

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._present:
            raise KeyError(name)
        return _read_filtered(self.clean_dir, name, self.codes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._present)

    def __len__(self) -> int:
        return len(self._present)


def _read_filtered(clean_dir: Path, name: str, codes: list[str]) -> pd.DataFrame:
    """Rows of ``codes``' firms in one table (needed columns, parts in order).

    A reference table not keyed by firm (buyers, macro indicators) is read whole.
    """
    filters = [("usc_code", "in", codes)] if TABLES[name].firm_keyed else None
    frames = [
        pd.read_parquet(f, columns=NEEDED_COLUMNS.get(name), filters=filters)
        for f in part_files(clean_dir, name)
    ]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


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
    lazy = PartitionTables(clean_dir, codes)  # absent tables count as empty, as in pandas
    return {name: lazy[name] for name in lazy}


# --------------------------------------------------------------------------- worker tasks
def _partition_tables(folder: str, codes: list[str] | None) -> Mapping[str, pd.DataFrame]:
    """Give a partition's clean tables, read lazily: filtered from the full folder, or a shard."""
    if codes is None:
        from features.snapshot import CleanTables

        return CleanTables(folder)
    return PartitionTables(folder, codes)


def _snapshot_part(folder: str, codes: list[str] | None, as_of: date) -> pd.DataFrame:
    """Snapshot of one partition's firms (runs on a worker)."""
    from features.snapshot import build_snapshot

    return build_snapshot(_partition_tables(folder, codes), as_of)


def _dataset_part(
    folder: str, codes: list[str] | None, start: date, end: date, every: str
) -> pd.DataFrame:
    """Training set rows of one partition's firms (runs on a worker)."""
    from features.dataset import build_dataset

    return build_dataset(_partition_tables(folder, codes), start, end, every)


# --------------------------------------------------------------------------- pre-sharding
def _shard_file(src: str, out_dir: str, table: str, part: int, n_partitions: int) -> dict[int, int]:
    """Split one part file of a table into the shard folders; return rows per shard."""
    import pyarrow.parquet as pq

    data = pq.read_table(src)
    if not TABLES[table].firm_keyed:
        # A reference table (buyers, macro indicators) goes whole into every shard; its rows
        # count once.
        for k in range(n_partitions):
            target = Path(out_dir) / f"{SHARD_PREFIX}{k:05d}" / table / f"part-{part:05d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(data, target)
        return {0: data.num_rows}
    codes, uniques = pd.factorize(data.column("usc_code").to_pandas())
    shard_of_unique = partition_of(pd.Series(uniques).astype("str"), n_partitions)
    # rows without a code (none after ingest) go to shard 0: kept, never dropped
    shard = np.where(codes >= 0, shard_of_unique[np.maximum(codes, 0)], 0)
    counts: dict[int, int] = {}
    for k in range(n_partitions):
        rows = np.flatnonzero(shard == k)  # ascending: file order is kept within a shard
        target = Path(out_dir) / f"{SHARD_PREFIX}{k:05d}" / table / f"part-{part:05d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data.take(rows), target)  # same Arrow schema and pandas metadata
        counts[k] = len(rows)
    return counts


def shard_clean(
    clean_dir: str | Path,
    out_dir: str | Path,
    n_partitions: int,
    client: Client | None = None,
    n_workers: int = 2,
    progress: bool = False,
) -> Path:
    """Write the clean tables once more, split by firm into ``n_partitions`` shard folders.

    Reading by filter (the default) makes every partition decode every Parquet row group of
    every table; after sharding, each partition reads only its own files. Pay this once, then
    build many snapshots and training sets from ``out_dir`` (:func:`build_snapshot_dask` and
    :func:`build_dataset_dask` recognise a sharded folder).

    Parameters
    ----------
    clean_dir : str or Path
        Folder of clean tables.
    out_dir : str or Path
        New folder: ``shard-NNNNN/<table>/part-NNNNN.parquet`` and ``shards.json``.
    n_partitions : int
        Shards (fixed from now on for this folder).
    client : distributed.Client, optional
        Cluster; by default a local cluster of ``n_workers`` is started and closed.
    n_workers : int
        Worker processes of the local cluster.
    progress : bool
        Show a progress bar over part files.

    Returns
    -------
    Path
        ``out_dir``.
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1; got {n_partitions}")
    if not part_files(clean_dir, "firms"):
        raise FileNotFoundError(f"{Path(clean_dir) / 'firms'}: no firms table in {clean_dir}")
    if client is None:
        with local_client(n_workers) as own:
            return shard_clean(clean_dir, out_dir, n_partitions, own, n_workers, progress)
    from distributed import as_completed

    out = Path(out_dir)
    jobs = [(name, i, f) for name in TABLES for i, f in enumerate(part_files(clean_dir, name))]
    futures = [
        client.submit(_shard_file, str(f), str(out), name, i, n_partitions, pure=False)
        for name, i, f in jobs
    ]
    for _ in tqdm(
        as_completed(futures),
        total=len(futures),
        desc="sharding",
        unit="file",
        disable=not progress,
    ):
        pass
    counts = client.gather(futures)
    rows: dict[str, int] = {}
    for (name, _, _), per_shard in zip(jobs, counts, strict=True):
        rows[name] = rows.get(name, 0) + sum(per_shard.values())
    meta = {
        "n_partitions": n_partitions,
        "hash": "crc32(usc_code utf-8) % n_partitions",
        "source": str(Path(clean_dir).resolve()),
        "rows": rows,
    }
    (out / SHARDS_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    log.info("sharded %s into %d shards → %s", clean_dir, n_partitions, out)
    return out


def shard_folders(folder: str | Path) -> list[Path] | None:
    """List the shard folders of a :func:`shard_clean` output (None for a plain folder)."""
    meta_path = Path(folder) / SHARDS_FILE
    if not meta_path.is_file():
        return None
    n = int(json.loads(meta_path.read_text(encoding="utf-8"))["n_partitions"])
    shards = [Path(folder) / f"{SHARD_PREFIX}{k:05d}" for k in range(n)]
    return [d for d in shards if part_files(d, "firms")]


def _sources(
    client: Client, clean_dir: str | Path, n_partitions: int | None
) -> list[tuple[str, list[str] | None]]:
    """Say what each partition reads: a shard folder, or the full folder filtered to it."""
    shards = shard_folders(clean_dir)
    if shards is not None:
        return [(str(d), None) for d in shards]
    parts = firm_partitions(clean_dir, _n_parts(client, n_partitions))
    return [(str(clean_dir), codes) for codes in parts]


# --------------------------------------------------------------------------- cluster
@contextmanager
def local_client(n_workers: int = 2, memory_limit: str | None = None) -> Iterator[Client]:
    """Start a local cluster of worker processes (one thread each) and yield its client.

    When dask's ``scheduler-address`` is configured (``DASK_SCHEDULER_ADDRESS`` in the
    environment, or ``dask.config.set``), connect to that running cluster instead: its own
    workers are used and it is left running.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    memory_limit : str, optional
        Per-worker memory limit (dask's default: the machine's memory split among workers).

    Yields
    ------
    distributed.Client
        Closed with its cluster on exit (a configured cluster is only disconnected from).
    """
    import dask
    from distributed import Client, LocalCluster

    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1; got {n_workers}")
    address = dask.config.get("scheduler-address", None)
    if address:
        with Client(address) as remote:
            yield remote
        return
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
    sources: list[tuple[str, list[str] | None]],
    args: tuple[Any, ...],
    progress: bool,
    desc: str,
) -> list[pd.DataFrame]:
    """Submit ``func(folder, codes, *args)`` per partition; results in partition order."""
    from distributed import as_completed

    futures = [client.submit(func, folder, codes, *args, pure=False) for folder, codes in sources]
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
        Firm partitions (default: one per worker thread); a folder written by
        :func:`shard_clean` has its own, one per shard.
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
    frames = _run_sharded(
        client,
        _snapshot_part,
        _sources(client, clean_dir, n_partitions),
        (when,),
        progress,
        "snapshot partitions",
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
        Firm partitions (default: one per worker thread); a folder written by
        :func:`shard_clean` has its own, one per shard.
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
    frames = _run_sharded(
        client,
        _dataset_part,
        _sources(client, clean_dir, n_partitions),
        (start, end, every),
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
        Folder of clean tables, or a folder written by :func:`shard_clean`.
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
    # fail before paying for a cluster
    if shard_folders(clean_dir) is None and not part_files(clean_dir, "firms"):
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
    "PartitionTables",
    "build_dataset_dask",
    "build_snapshot_dask",
    "build_snapshot_file_dask",
    "firm_partitions",
    "local_client",
    "partition_of",
    "read_partition",
    "shard_clean",
    "shard_folders",
]
