"""What one (model, snapshot) bundle holds and answers: :class:`Loaded`, immutable once built.

Scores and contributions are computed once per bundle (in this process, or read from the
precomputed file every worker maps: :mod:`serving.precomputed`); a firm's reasons are read from
its contributions when first asked for, so a bundle of 200,000 firms holds a few arrays rather
than millions of small Python objects.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pandas as pd

from features.default_status import DefaultStatus
from features.labels import shown_value
from features.values import plain

if TYPE_CHECKING:
    from features.catalog import Catalog
    from training.model import CreditModel

#: Columns every snapshot carries before its features.
ID_COLUMNS = ("usc_code", "as_of", "name")


class LazyReasons(Sequence[list[dict[str, Any]]]):
    """Per firm the top adverse reasons, computed from its contributions on first access.

    Equal to ``model.reasons(frame, top, contrib=contrib)`` row by row
    (``CreditModel.row_reasons``); each firm's list is kept once computed.

    Parameters
    ----------
    model : CreditModel
    contrib : ndarray of shape (n, k)
    matrix : ndarray of shape (n, k)
        The booster's input rows (reason values are read back from them).
    top : int
    """

    def __init__(self, model: CreditModel, contrib: np.ndarray, matrix: np.ndarray, top: int):
        self._model, self._contrib, self._matrix, self._top = model, contrib, matrix, top
        self._done: dict[int, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._contrib.shape[0])

    @overload
    def __getitem__(self, i: int) -> list[dict[str, Any]]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[dict[str, Any]]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if i < 0 else 0)
        got = self._done.get(i)
        if got is None:
            got = self._model.row_reasons(self._contrib[i], self._matrix[i], self._top)
            with self._lock:
                self._done.setdefault(i, got)
        return got

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        return (self[i] for i in range(len(self)))


class LoadError(RuntimeError):
    """A model or snapshot cannot be served (the message says which file and why)."""


class BoundedMemo:
    """Answers kept for the life of a bundle, at most ``size`` of them (least recent dropped).

    Parameters
    ----------
    size : int
        Most entries kept (0 keeps none).
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """Return the kept value of ``key`` (None when absent)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> Any:
        """Keep ``value`` under ``key`` and return it."""
        if self.size <= 0:
            return value
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def _memo() -> BoundedMemo:
    from training.recourse import load_recourse_config

    return BoundedMemo(load_recourse_config().match_memo_size)


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
    reasons : sequence of list of dict
        Top adverse reasons per firm (a :class:`LazyReasons` or a list).
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
    memo : BoundedMemo
        Answers that depend only on this bundle (e.g. recourse plans of ``/matches``).
    """

    model: CreditModel
    catalog: Catalog | None
    snapshot: pd.DataFrame
    as_of: date
    scores: pd.DataFrame
    contrib: np.ndarray
    base: np.ndarray
    reasons: Sequence[list[dict[str, Any]]]
    position: dict[str, int]
    model_source: str
    snapshot_source: str
    scales: dict[str, float] = field(default_factory=dict)
    matrix: np.ndarray | None = None
    default_status: DefaultStatus | None = None
    default_reasons: list[list[dict[str, Any]]] = field(default_factory=list)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    memo: BoundedMemo = field(default_factory=_memo, compare=False, repr=False)

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

    @cached_property
    def _columns(self) -> dict[str, np.ndarray]:
        """The score columns and names as arrays (a request reads one item of each)."""
        cols = {c: self.scores[c].to_numpy() for c in self.scores.columns}
        cols["name"] = self.snapshot["name"].to_numpy()
        return cols

    def score_payload(self, usc_code: str) -> dict[str, Any]:
        """Return the precomputed score answer of one firm (no model work)."""
        i = self.position[usc_code]
        c = self._columns
        return {
            "usc_code": usc_code,
            "name": plain(c["name"][i]),
            "pd": float(c["pd"][i]),
            "score": plain(c["score"][i]),
            "grade": str(c["grade"][i]),
            "supervision_class": str(c["supervision_class"][i]),
            "in_default": bool(c["in_default"][i]),
            "default_reasons": self.default_reasons_of(usc_code),
            "model_pd": float(c["model_pd"][i]),
            "model_score": float(c["model_score"][i]),
            "model_grade": str(c["model_grade"][i]),
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

    def what_if(self, usc_code: str, values: dict[str, Any]) -> dict[str, Any]:
        """Score one firm with some features changed (the model's one-row path, one thread).

        Parameters
        ----------
        usc_code : str
            A firm of the snapshot.
        values : dict
            Feature -> new value (validated by the caller).

        Returns
        -------
        dict
            ``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class``.
        """
        i = self.position[usc_code]
        if self.matrix is None:
            x = self.model.row_vector({**self.snapshot.iloc[i].to_dict(), **values})
        else:
            x = self.matrix[i].copy()
            names = self.model.feature_names_tuple
            for name, value in values.items():
                x[names.index(name)] = self.model.encode(name, value)
        return self.model.score_row(x)

    def features_of(self, usc_code: str) -> pd.DataFrame:
        """One firm's feature row as a one-row frame (a copy)."""
        i = self.position[usc_code]
        return self.snapshot.iloc[[i]].copy()


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
