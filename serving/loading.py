"""Building a bundle: read the snapshot, load the model and catalog, score and explain.

:func:`build` checks a model against a snapshot and returns the :class:`~serving.bundle.Loaded`
bundle; the model's per-firm work comes from a precomputed file when one matches
(:mod:`serving.precomputed`), else it is done here in chunks.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.default_status import (
    DefaultStatus,
    DefaultStatusError,
    default_flags,
    load_default_status,
    serve_default,
)
from serving.bundle import ID_COLUMNS, LazyReasons, Loaded, LoadError

if TYPE_CHECKING:
    from features.catalog import Catalog
    from serving.precomputed import Precomputed
    from serving.settings import Settings
    from training.model import CreditModel

logger = logging.getLogger(__name__)


def peer_percentiles(scores: pd.Series, groups: pd.Series | None) -> pd.Series:
    """Percentile (0-100] of each score within its group: 100 is the best-scored peer.

    Parameters
    ----------
    scores : Series
        Scores (higher is better).
    groups : Series, optional
        Peer group of each row (industry); all rows form one group when None.
    """
    if groups is None:
        return scores.rank(pct=True, method="max") * 100.0
    key = groups.astype("object").where(groups.notna(), "(missing)")
    return scores.groupby(key, observed=True).rank(pct=True, method="max") * 100.0


def read_snapshot(path: Path | str) -> pd.DataFrame:
    """Read a snapshot Parquet file.

    Raises
    ------
    LoadError
        When the file is missing or not Parquet.
    """
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"snapshot {path} does not exist")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a bad file
        raise LoadError(f"snapshot {path} is not a readable Parquet file: {exc}") from exc


def build(
    model: CreditModel,
    snapshot: pd.DataFrame,
    catalog: Catalog | None = None,
    model_source: str = "",
    snapshot_source: str = "",
    top_reasons: int = 4,
    default_status: DefaultStatus | None = None,
    precomputed: Precomputed | None = None,
) -> Loaded:
    """Check a model against a snapshot, then score and explain every firm.

    Parameters
    ----------
    model : CreditModel
    snapshot : DataFrame
        ``usc_code``, ``as_of``, ``name`` and at least the model's features.
    catalog : Catalog, optional
    model_source, snapshot_source : str
        Where they came from (shown by readiness and the reload answer).
    top_reasons : int
        Reasons kept per firm.
    default_status : DefaultStatus, optional
        In-default rules (default: the shipped ``features/config/default_status.yaml``). A firm
        meeting any of them is served the default grade, PD 1.0 and no score.
    precomputed : Precomputed, optional
        The model's log-odds and contributions on this snapshot (:mod:`serving.precomputed`);
        used when its firms match the snapshot's, else everything is computed here.

    Returns
    -------
    Loaded

    Raises
    ------
    LoadError
        Missing columns, duplicate or empty firms, several as-of dates, non-finite outputs,
        in-default features missing or a default grade that clashes with the master scale.
    """
    where = snapshot_source or "snapshot"
    missing = [c for c in (*ID_COLUMNS, *model.feature_names) if c not in snapshot.columns]
    if missing:
        raise LoadError(f"{where} lacks columns the model needs: {', '.join(missing[:10])}")
    if snapshot.empty:
        raise LoadError(f"{where} has no rows")
    if snapshot["usc_code"].duplicated().any():
        dup = snapshot.loc[snapshot["usc_code"].duplicated(), "usc_code"].iloc[0]
        raise LoadError(f"{where} lists firm {dup} more than once")
    as_ofs = pd.to_datetime(snapshot["as_of"]).dropna().unique()
    if len(as_ofs) != 1:
        raise LoadError(f"{where} must have one as_of date; found {len(as_ofs)}")
    frame = snapshot.reset_index(drop=True)
    try:
        matrix = model.matrix(frame)
        if precomputed is not None and precomputed.matches(frame, model):
            log_odds, contrib, base = precomputed.log_odds, precomputed.contrib, precomputed.base
        else:
            from training.batch import explain_batch

            log_odds, contrib, base = explain_batch(model, frame, num_threads=0, progress=None)
        scores = model.frame_from_log_odds(log_odds, frame.index)
    except Exception as exc:  # a broken booster or mismatched features fails here
        raise LoadError(
            f"model {model_source or model.version} cannot score {where}: {exc}"
        ) from exc
    reasons = LazyReasons(model, contrib, matrix, top_reasons)
    if not np.isfinite(scores["pd"].to_numpy()).all() or not np.isfinite(contrib).all():
        raise LoadError(f"model {model_source or model.version} gives non-finite output on {where}")
    industry = frame["industry"] if "industry" in frame.columns else None
    scores = scores.reset_index(drop=True)
    scores["peer_percentile"] = peer_percentiles(scores["score"], industry).to_numpy()
    try:
        status = default_status if default_status is not None else load_default_status()
        flagged, default_reasons = default_flags(frame, status)
    except DefaultStatusError as exc:
        raise LoadError(str(exc)) from exc
    if status.grade in model.master_scale.grades:
        raise LoadError(
            f"default grade {status.grade!r} is also a performing grade of the master scale"
        )
    scores = serve_default(scores, flagged, status)
    indexed = frame.set_index("usc_code", drop=False)
    scales = {}
    if catalog is not None:
        from training.recourse import feature_scales

        scales = feature_scales(frame, catalog)
    return Loaded(
        model=model,
        catalog=catalog,
        snapshot=indexed,
        as_of=pd.Timestamp(as_ofs[0]).date(),
        scores=scores.set_index(indexed.index),
        contrib=contrib,
        base=base,
        reasons=reasons,
        position={code: i for i, code in enumerate(indexed.index)},
        model_source=model_source,
        snapshot_source=snapshot_source,
        scales=scales,
        matrix=matrix,
        default_status=status,
        default_reasons=default_reasons,
    )


def load_model(model_dir: Path | str | None, settings: Settings) -> tuple[CreditModel, str]:
    """Load a model package, or the registry champion when ``model_dir`` is None.

    Returns
    -------
    tuple of (CreditModel, str)
        The model and a description of its source.

    Raises
    ------
    LoadError
        The package or the registry cannot give a usable model.
    """
    from training.model import CreditModel

    try:
        if model_dir is not None:
            # Isolated: a booster that crashes LightGBM's parser crashes a child, not the service.
            return CreditModel.load(model_dir, isolated=True), str(model_dir)
        from training import registry

        name = settings.model_name or registry.MODEL_NAME
        model = registry.load_champion(
            name=name,
            tracking_uri=settings.mlflow_tracking_uri,
            alias=settings.model_alias,
            isolated=True,
        )
        return model, f"models:/{name}@{settings.model_alias}"
    except Exception as exc:  # any failure to produce a model is a refused load
        source = model_dir or "the registry champion"
        raise LoadError(f"model {source} cannot be loaded: {exc}") from exc


def model_roots(settings: Settings) -> list[Path]:
    """Folders under which an admin may pick a model package to reload.

    ``settings.model_roots``, else the folder holding the configured ``model_dir``.
    """
    if settings.model_roots:
        return [Path(p) for p in settings.model_roots]
    return [Path(settings.model_dir).parent] if settings.model_dir is not None else []


def snapshot_roots(settings: Settings) -> list[Path]:
    """Folders under which an admin may pick a snapshot to reload.

    ``settings.snapshot_roots``, else the folder holding the configured ``snapshot``.
    """
    if settings.snapshot_roots:
        return [Path(p) for p in settings.snapshot_roots]
    return [Path(settings.snapshot).parent] if settings.snapshot is not None else []


def within_roots(path: Path | str, roots: list[Path]) -> Path | None:
    """Return ``path`` resolved (symlinks and ``..`` followed) if it lies under one of ``roots``."""
    resolved = Path(path).resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    return None


def load_catalog_for(model: CreditModel, path: Path | None) -> Catalog | None:
    """Load the catalog for what-if and recourse: given file, model's own, or packaged one."""
    from features.catalog import load_catalog

    if path is not None:
        return load_catalog(path)
    text = getattr(model, "catalog_yaml", None)
    if text:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "catalog.yaml"
            file.write_text(text, encoding="utf-8")
            try:
                return load_catalog(file)
            except Exception:  # a bare feature list saved without a catalog: use the packaged one
                logger.info(
                    "model %s carries no full catalog; using the packaged one", model.version
                )
    return load_catalog()
