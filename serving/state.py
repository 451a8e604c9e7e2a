"""What the service serves: the loaded model and snapshot with every firm scored and explained.

A :class:`Loaded` bundle is built once per (model, snapshot) and never changed afterwards; the
:class:`ServingState` holds one and replaces it with a single reference assignment, so a
request that picked up the old bundle finishes on it while new requests see the new one. A
bundle that fails to build or check is refused with a log line and the old one keeps serving.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.default_status import (
    DefaultStatus,
    DefaultStatusError,
    default_flags,
    load_default_status,
    serve_default,
)
from features.labels import shown_value
from features.values import plain

if TYPE_CHECKING:
    from features.catalog import Catalog
    from serving.settings import Settings
    from training.model import CreditModel

logger = logging.getLogger(__name__)

#: Columns every snapshot carries before its features.
ID_COLUMNS = ("usc_code", "as_of", "name")


class LoadError(RuntimeError):
    """A model or snapshot cannot be served (the message says which file and why)."""


@dataclass(frozen=True)
class Loaded:
    """A model and a snapshot with all firms scored and explained (immutable once built).

    Attributes
    ----------
    model : CreditModel
    catalog : Catalog or None
        Feature catalog (bounds, directions and steps for what-if and recourse).
    snapshot : DataFrame
        The snapshot indexed by ``usc_code``.
    as_of : date
        The snapshot's as-of date.
    scores : DataFrame
        Per firm (same index): the served ``pd``, ``score``, ``grade`` and
        ``supervision_class`` (for a firm in default: 1.0, NaN, the default grade and class),
        ``in_default``, the model's own ``model_pd``, ``model_score``, ``model_grade``,
        ``model_supervision_class``, and ``log_odds``, ``peer_percentile`` (from the model).
    contrib : ndarray of shape (n, k)
        SHAP contributions in calibrated log-odds (model feature order).
    base : ndarray of shape (n,)
        Base values.
    reasons : list of list of dict
        Top adverse reasons per firm.
    position : dict
        Row position of each firm.
    scales : dict
        Population spread of each actionable feature (recourse costs).
    matrix : ndarray of shape (n, k), optional
        The booster's input rows (what-if changes a copy of one and predicts).
    default_status : DefaultStatus, optional
        The in-default rules applied (None: no firm is flagged).
    default_reasons : list of list of dict
        Per firm the in-default rules it meets (empty for performing firms).
    model_source, snapshot_source : str
        Where they were loaded from.
    loaded_at : datetime
    """

    model: CreditModel
    catalog: Catalog | None
    snapshot: pd.DataFrame
    as_of: date
    scores: pd.DataFrame
    contrib: np.ndarray
    base: np.ndarray
    reasons: list[list[dict[str, Any]]]
    position: dict[str, int]
    model_source: str
    snapshot_source: str
    scales: dict[str, float] = field(default_factory=dict)
    matrix: np.ndarray | None = None
    default_status: DefaultStatus | None = None
    default_reasons: list[list[dict[str, Any]]] = field(default_factory=list)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def model_version(self) -> str:
        """Version of the served model."""
        return str(self.model.version)

    def has(self, usc_code: str) -> bool:
        """Whether the firm is in the snapshot."""
        return usc_code in self.position

    @property
    def grades(self) -> list[str]:
        """Every grade the service serves, best first: the master scale, then the default grade."""
        extra = [self.default_status.grade] if self.default_status is not None else []
        return [*self.model.master_scale.grades, *extra]

    def in_default(self, usc_code: str) -> bool:
        """Whether the firm is in default at the as-of date (served grade D)."""
        return bool(self.scores["in_default"].iat[self.position[usc_code]])

    def default_reasons_of(self, usc_code: str) -> list[dict[str, Any]]:
        """Return the in-default rules the firm meets (empty when performing)."""
        if not self.default_reasons:
            return []
        return self.default_reasons[self.position[usc_code]]

    def score_payload(self, usc_code: str) -> dict[str, Any]:
        """Return the precomputed score answer of one firm (no model work)."""
        i = self.position[usc_code]
        s = self.scores.iloc[i]
        return {
            "usc_code": usc_code,
            "name": plain(self.snapshot["name"].iat[i]),
            "pd": float(s["pd"]),
            "score": plain(s["score"]),
            "grade": str(s["grade"]),
            "supervision_class": str(s["supervision_class"]),
            "in_default": bool(s["in_default"]),
            "default_reasons": self.default_reasons_of(usc_code),
            "model_pd": float(s["model_pd"]),
            "model_score": float(s["model_score"]),
            "model_grade": str(s["model_grade"]),
            "reasons": self.reasons[i],
            "model_version": self.model_version,
            "as_of": self.as_of,
        }

    def explanation_payload(self, usc_code: str) -> dict[str, Any]:
        """Return the precomputed full explanation of one firm."""
        i = self.position[usc_code]
        names = self.model.feature_names
        row = self.snapshot.iloc[i]
        specs = self.catalog
        contributions = [
            {
                "feature": name,
                # rounded and within the catalog bounds, as people (and forms) take it
                "value": shown_value(
                    plain(row[name]), specs[name] if specs is not None and name in specs else None
                ),
                "contribution": float(self.contrib[i, j]),
            }
            for j, name in enumerate(names)
        ]
        contributions.sort(key=lambda c: -abs(c["contribution"]))
        s = self.scores.iloc[i]
        return {
            **self.score_payload(usc_code),
            "log_odds": float(s["log_odds"]),
            "base_value": float(self.base[i]),
            "contributions": contributions,
            "industry": plain(row["industry"]) if "industry" in row.index else None,
            "peer_percentile": float(s["peer_percentile"]),
        }

    def what_if(self, usc_code: str, values: dict[str, Any]) -> pd.Series:
        """Score one firm with some features changed (a live booster call, one thread).

        Parameters
        ----------
        usc_code : str
            A firm of the snapshot.
        values : dict
            Feature -> new value (validated by the caller).

        Returns
        -------
        Series
            ``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class``.
        """
        from training.recourse import score_matrix

        i = self.position[usc_code]
        x = (
            self.model.matrix(self.features_of(usc_code))
            if self.matrix is None
            else self.matrix[[i]].copy()
        )
        index = {f.name: (j, f) for j, f in enumerate(self.model.features)}
        for name, value in values.items():
            j, info = index[name]
            if info.kind == "category":
                cats = info.categories or []
                x[0, j] = float(cats.index(str(value))) if str(value) in cats else np.nan
            else:
                x[0, j] = float(value)
        return score_matrix(self.model, x).iloc[0]

    def features_of(self, usc_code: str) -> pd.DataFrame:
        """One firm's feature row as a one-row frame (a copy)."""
        i = self.position[usc_code]
        return self.snapshot.iloc[[i]].copy()


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
        scores = model.score(frame, num_threads=0)
        contrib, base = model.explain(frame, num_threads=0)
        reasons = model.reasons(frame, top=top_reasons, contrib=contrib)
        matrix = model.matrix(frame)
    except Exception as exc:  # a broken booster or mismatched features fails here
        raise LoadError(
            f"model {model_source or model.version} cannot score {where}: {exc}"
        ) from exc
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
            return CreditModel.load(model_dir), str(model_dir)
        from training import registry

        name = settings.model_name or registry.MODEL_NAME
        model = registry.load_champion(name=name, tracking_uri=settings.mlflow_tracking_uri)
        return model, f"models:/{name}@{settings.model_alias}"
    except Exception as exc:  # any failure to produce a model is a refused load
        source = model_dir or "the registry champion"
        raise LoadError(f"model {source} cannot be loaded: {exc}") from exc


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


def served_info(loaded: Loaded) -> dict[str, Any]:
    """Describe what a bundle serves."""
    return {
        "model_version": loaded.model_version,
        "model_source": loaded.model_source,
        "snapshot": loaded.snapshot_source,
        "as_of": loaded.as_of,
        "firms": len(loaded.position),
        "loaded_at": loaded.loaded_at,
    }


def outcome(scores: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """PD, score, grade and supervision class of a scored row."""
    return {
        "pd": float(scores["pd"]),
        "score": float(scores["score"]),
        "grade": str(scores["grade"]),
        "supervision_class": str(scores["supervision_class"]),
    }


class ServingState:
    """The bundle currently served, swapped atomically on reload.

    Parameters
    ----------
    loaded : Loaded, optional
        Start with this bundle (tests); otherwise :meth:`load` fills it.
    """

    def __init__(self, loaded: Loaded | None = None) -> None:
        self._current = loaded
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def current(self) -> Loaded | None:
        """The bundle being served (read it once per request)."""
        return self._current

    def swap(self, loaded: Loaded) -> Loaded | None:
        """Serve ``loaded`` from now on; return the previous bundle."""
        old, self._current = self._current, loaded
        return old

    def load(
        self,
        settings: Settings,
        model_dir: Path | str | None = None,
        snapshot: Path | str | None = None,
    ) -> Loaded:
        """Build a bundle and swap it in; on any failure keep the old one and raise.

        Parameters
        ----------
        settings : Settings
            Defaults for the model source, snapshot, catalog and reasons.
        model_dir : Path, optional
            Model package (default: ``settings.model_dir``, else the registry champion).
        snapshot : Path, optional
            Snapshot file (default: ``settings.snapshot``, else the current one's).

        Raises
        ------
        LoadError
            Naming the file and the problem; the previous bundle keeps serving.
        """
        with self._reload_lock:  # one reload at a time; requests never wait on it
            start = time.perf_counter()
            try:
                current = self._current
                model_dir = model_dir if model_dir is not None else settings.model_dir
                snap_path = snapshot or settings.snapshot
                if snap_path is None and current is not None:
                    snap_path = current.snapshot_source
                if snap_path is None:
                    raise LoadError(
                        "no snapshot configured: set KUAXIN_SNAPSHOT or pass --snapshot"
                    )
                model, source = load_model(model_dir, settings)
                catalog = load_catalog_for(model, settings.catalog)
                try:
                    status = load_default_status(settings.default_status)
                except DefaultStatusError as exc:
                    raise LoadError(str(exc)) from exc
                frame = read_snapshot(snap_path)
                # Start-up's long step: say what is happening and how much (done: the line below).
                logger.info(
                    "scoring and explaining %d firms of %s with model %s ...",
                    len(frame),
                    snap_path,
                    model.version,
                )
                loaded = build(
                    model,
                    frame,
                    catalog=catalog,
                    model_source=source,
                    snapshot_source=str(snap_path),
                    top_reasons=settings.top_reasons,
                    default_status=status,
                )
            except LoadError as exc:
                self.last_error = str(exc)
                logger.error("load refused, still serving %s: %s", self.describe(), exc)
                raise
            except Exception as exc:  # anything else is still a refused load
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("load refused, still serving %s: %s", self.describe(), exc)
                raise LoadError(self.last_error) from exc
            self.swap(loaded)
            self.last_error = None
            logger.info(
                "serving model %s (%s) on snapshot %s as of %s: %d firms in %.1f s",
                loaded.model_version,
                loaded.model_source,
                loaded.snapshot_source,
                loaded.as_of,
                len(loaded.position),
                time.perf_counter() - start,
            )
            return loaded

    def describe(self) -> str:
        """One line naming what is served."""
        cur = self._current
        if cur is None:
            return "nothing"
        return f"model {cur.model_version} on snapshot {cur.snapshot_source} as of {cur.as_of}"
