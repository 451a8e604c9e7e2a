"""The precomputed file of a (model, snapshot): every firm's log-odds, contributions and base.

Scoring and explaining a snapshot is the slow part of a start-up (TreeSHAP over every firm). It
is done once, in chunks or on a Dask cluster (:func:`training.batch.explain_batch`), and
written to a folder of ``.npy`` arrays named by a key of the model and the snapshot file's
bytes; every worker process then memory-maps the arrays (the operating system shares the pages)
instead of recomputing them. A folder whose key, firm list or shapes do not match is ignored
and rebuilt, so a changed model or snapshot is never served stale numbers.

Layout of ``<dir>/<key>/``: ``meta.json`` (key, model version, firms, features),
``usc_code.npy`` (fixed-width text), ``log_odds.npy``, ``base.npy``, ``contrib.npy``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

    from training.model import CreditModel

logger = logging.getLogger(__name__)

#: Bump when the layout or the meaning of an array changes (old folders are then ignored).
FORMAT = 1
ARRAYS = ("usc_code", "log_odds", "base", "contrib")


@dataclass(frozen=True)
class Precomputed:
    """The model's work on one snapshot, row for row in the snapshot's order.

    Attributes
    ----------
    key : str
    usc_code : ndarray of shape (n,)
    log_odds : ndarray of shape (n,)
        Calibrated log-odds (unfloored).
    contrib : ndarray of shape (n, k)
        TreeSHAP contributions in calibrated log-odds.
    base : ndarray of shape (n,)
    source : str
        ``computed`` or the folder it was read from.
    """

    key: str
    usc_code: np.ndarray
    log_odds: np.ndarray
    contrib: np.ndarray
    base: np.ndarray
    source: str = "computed"

    def matches(self, snapshot: pd.DataFrame, model: CreditModel) -> bool:
        """Whether these rows are the snapshot's firms, in order, for the model's features."""
        n, k = len(snapshot), len(model.features)
        if self.contrib.shape != (n, k) or self.log_odds.shape != (n,) or self.base.shape != (n,):
            return False
        return bool(np.array_equal(self.usc_code, snapshot["usc_code"].astype(str).to_numpy()))


def model_fingerprint(model: CreditModel) -> str:
    """SHA-256 of what fixes the model's outputs: trees, calibration, features, version."""
    digest = hashlib.sha256()
    digest.update(model.booster.model_to_string().encode())
    digest.update(json.dumps(model.to_json(), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def file_fingerprint(path: Path | str) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(model: CreditModel, snapshot_path: Path | str) -> str:
    """Key of a (model, snapshot file) pair: changes when either changes."""
    text = f"{FORMAT}:{model_fingerprint(model)}:{file_fingerprint(snapshot_path)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compute(
    model: CreditModel,
    snapshot: pd.DataFrame,
    key: str,
    client: Client | None = None,
    chunk_size: int = 10_000,
) -> Precomputed:
    """Score and explain every firm (chunks in this process, or partitions on ``client``)."""
    from training.batch import explain_batch

    log_odds, contrib, base = explain_batch(
        model, snapshot, chunk_size=chunk_size, client=client, progress=None
    )
    return Precomputed(
        key=key,
        usc_code=snapshot["usc_code"].astype(str).to_numpy().astype("U"),
        log_odds=log_odds,
        contrib=np.ascontiguousarray(contrib),
        base=base,
    )


def write(pre: Precomputed, folder: Path | str, model: CreditModel) -> Path:
    """Write the arrays under ``folder/<key>/`` atomically (a finished folder or none).

    Returns
    -------
    Path
        The key's folder.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    target = root / pre.key
    tmp = Path(tempfile.mkdtemp(prefix=f".{pre.key}-", dir=root))
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.asarray(getattr(pre, name)), allow_pickle=False)
        meta: dict[str, Any] = {
            "format": FORMAT,
            "key": pre.key,
            "model_version": str(model.version),
            "firms": len(pre.log_odds),
            "features": model.feature_names,
        }
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.replace(tmp, target)  # another worker may have won the race: keep its folder
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read(folder: Path | str, key: str) -> Precomputed | None:
    """Memory-map the arrays of ``key`` under ``folder``; None when absent or unreadable."""
    path = Path(folder) / key
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        arrays = {
            name: np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in ARRAYS
        }
    except (OSError, ValueError) as exc:
        if (path / "meta.json").exists():
            logger.warning("precomputed folder %s is unreadable (%s); recomputing", path, exc)
        return None
    return Precomputed(key=key, source=str(path), **arrays)


def default_folder(snapshot_path: Path | str) -> Path:
    """Where precomputed folders live unless configured: beside the snapshot file."""
    return Path(snapshot_path).resolve().parent / ".kuaxin-precomputed"


def ensure(
    model: CreditModel,
    snapshot: pd.DataFrame,
    snapshot_path: Path | str,
    folder: Path | str | None = None,
    client: Client | None = None,
) -> Precomputed:
    """Read the (model, snapshot) arrays, or compute and write them first.

    Parameters
    ----------
    model : CreditModel
    snapshot : DataFrame
        The snapshot read from ``snapshot_path`` (rows in file order).
    snapshot_path : Path or str
    folder : Path or str, optional
        Default :func:`default_folder`.
    client : distributed.Client, optional
        Compute on this Dask cluster.

    Returns
    -------
    Precomputed
        Memory-mapped when read; a folder that cannot be written is logged and skipped.
    """
    folder = Path(folder) if folder is not None else default_folder(snapshot_path)
    key = cache_key(model, snapshot_path)
    found = read(folder, key)
    if found is not None and found.matches(snapshot, model):
        return found
    pre = compute(model, snapshot, key, client=client)
    try:
        path = write(pre, folder, model)
    except OSError as exc:
        logger.warning(
            "cannot write precomputed scores to %s (%s); serving them anyway", folder, exc
        )
        return pre
    return read(path.parent, key) or pre
