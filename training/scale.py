"""Score scaling and the PD master scale (DOMAIN.md §5.1, §5.2, §5.5).

Pure domain maths: a points-to-double-odds :class:`ScoreScale`, a :class:`MasterScale` of PD
bands with their grades and supervision classes, and the regulatory :data:`PD_FLOOR`. Both
classes round-trip exactly through ``to_dict`` / ``from_dict`` so they can be saved with the
model; the default parameters live in ``training/config/model.yaml``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import yaml

CONFIG_PATH = Path(__file__).parent / "config" / "model.yaml"

#: The PD floor (Basel III final for corporate exposures, 0.05 %): ``pd_floor`` of
#: ``training/config/model.yaml``, the one place it is set (pricing uses it too).
PD_FLOOR: float = float(yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))["pd_floor"])


def load_config(path: Path | str | None = None) -> dict[str, Any]:
    """Read the model configuration (scale, master scale, PD floor, search, gate).

    Parameters
    ----------
    path : Path or str, optional
        YAML file; defaults to ``training/config/model.yaml``.

    Returns
    -------
    dict
        The parsed configuration, validated by :class:`training.model_config.ModelConfig`.

    Raises
    ------
    ValueError
        Naming the file and the offending keys when the configuration is invalid.
    """
    from training.model_config import validate_config

    source = Path(path or CONFIG_PATH)
    with open(source, encoding="utf-8") as fh:
        raw: dict[str, Any] = yaml.safe_load(fh)
    return validate_config(raw, str(source))


@dataclass(frozen=True)
class ScoreScale:
    """Points-to-double-odds scaling: ``score = offset + factor * ln((1 - pd) / pd)``.

    Parameters
    ----------
    base_score : float
        Score at ``base_odds`` (e.g. 600).
    base_odds : float
        Good:bad odds at ``base_score`` (e.g. 50 for 50:1).
    pdo : float
        Points to double the odds (e.g. 20).
    """

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        if not self.pdo > 0:
            raise ValueError(f"pdo must be > 0; got {self.pdo}")
        if not self.base_odds > 0:
            raise ValueError(f"base_odds must be > 0; got {self.base_odds}")

    @property
    def factor(self) -> float:
        """Points per unit of log-odds, ``pdo / ln 2``."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Score at even odds, ``base_score - factor * ln(base_odds)``."""
        return self.base_score - self.factor * math.log(self.base_odds)

    @overload
    def score(self, pd: float) -> float: ...
    @overload
    def score(self, pd: np.ndarray) -> np.ndarray: ...
    def score(self, pd: float | np.ndarray) -> float | np.ndarray:
        """Score of a probability of default (higher score = lower risk).

        Parameters
        ----------
        pd : float or ndarray
            PD in (0, 1).

        Returns
        -------
        float or ndarray
            The score, same shape as ``pd``.
        """
        p = np.asarray(pd, dtype=float)
        if np.any((p <= 0) | (p >= 1)):
            raise ValueError("pd must be in (0, 1); got a value outside it")
        out = self.offset + self.factor * np.log((1.0 - p) / p)
        return float(out) if np.ndim(out) == 0 else out

    def score_from_log_odds(self, log_odds: float | np.ndarray) -> float | np.ndarray:
        """Score from the log-odds of default ``ln(pd / (1 - pd))``."""
        out = self.offset - self.factor * np.asarray(log_odds, dtype=float)
        return float(out) if np.ndim(out) == 0 else out

    @overload
    def pd(self, score: float) -> float: ...
    @overload
    def pd(self, score: np.ndarray) -> np.ndarray: ...
    def pd(self, score: float | np.ndarray) -> float | np.ndarray:
        """Probability of default of a score (the inverse of :meth:`score`).

        Parameters
        ----------
        score : float or ndarray
            Score points.

        Returns
        -------
        float or ndarray
            PD in (0, 1), same shape as ``score``.
        """
        s = np.asarray(score, dtype=float)
        out = 1.0 / (1.0 + np.exp((s - self.offset) / self.factor))
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, float]:
        """Parameters as a plain dict (saved in ``model.json``)."""
        return {"base_score": self.base_score, "base_odds": self.base_odds, "pdo": self.pdo}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreScale:
        """Rebuild from :meth:`to_dict` output or the ``score_scale`` config block."""
        return cls(float(data["base_score"]), float(data["base_odds"]), float(data["pdo"]))


@dataclass(frozen=True)
class Band:
    """One grade of the master scale: PDs in ``[lower, upper)`` get ``grade``."""

    grade: str
    lower: float
    upper: float
    supervision_class: str


class MasterScale:
    """PD bands with grades (best first) and their supervision classes.

    Parameters
    ----------
    bands : list of dict
        Each with ``grade``, ``upper`` (exclusive PD bound; the last must be 1.0) and
        ``supervision_class``, in increasing ``upper`` order. Lower bounds follow from the
        previous band (0 for the first).
    """

    def __init__(self, bands: list[dict[str, Any]]) -> None:
        if not bands:
            raise ValueError("bands must be a non-empty list; got none")
        uppers = [float(b["upper"]) for b in bands]
        if any(b <= a for a, b in itertools.pairwise(uppers)):
            raise ValueError(f"bands must have increasing 'upper'; got {uppers}")
        if uppers[-1] != 1.0:
            raise ValueError(f"the last band's upper must be 1.0; got {uppers[-1]}")
        grades = [str(b["grade"]) for b in bands]
        if len(set(grades)) != len(grades):
            raise ValueError(f"grades must be unique; got {grades}")
        lowers = [0.0, *uppers[:-1]]
        self._bands = [
            Band(g, lo, up, str(b["supervision_class"]))
            for g, lo, up, b in zip(grades, lowers, uppers, bands, strict=True)
        ]
        self._uppers = np.array(uppers[:-1])
        self._grades = np.array(grades, dtype=object)
        self._classes = {b.grade: b.supervision_class for b in self._bands}

    @property
    def bands(self) -> list[Band]:
        """The bands, best grade first."""
        return list(self._bands)

    @property
    def grades(self) -> list[str]:
        """Grade names, best first."""
        return [b.grade for b in self._bands]

    @overload
    def grade(self, pd: float) -> str: ...
    @overload
    def grade(self, pd: np.ndarray) -> np.ndarray: ...
    def grade(self, pd: float | np.ndarray) -> str | np.ndarray:
        """Grade of a PD (or an array of PDs).

        Parameters
        ----------
        pd : float or ndarray
            PD in [0, 1].

        Returns
        -------
        str or ndarray of str
        """
        out = self._grades[self.grade_codes(pd)]
        return str(out) if np.ndim(out) == 0 else out

    def grade_codes(self, pd: float | np.ndarray) -> np.ndarray:
        """Position in :attr:`grades` of each PD's grade (:meth:`grade` without the strings).

        Raises
        ------
        ValueError
            A PD outside [0, 1] or NaN.
        """
        p = np.asarray(pd, dtype=float)
        if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
            raise ValueError("pd must be in [0, 1]; got a value outside it or NaN")
        return np.searchsorted(self._uppers, p, side="right")

    def supervision_class(self, grade: str) -> str:
        """Supervision class (A/B/C/D) of a grade."""
        try:
            return self._classes[grade]
        except KeyError:
            raise ValueError(f"grade must be one of {self.grades}; got {grade!r}") from None

    def rank(self, grade: str) -> int:
        """Position of a grade, 0 for the best."""
        if grade not in self._classes:
            raise ValueError(f"grade must be one of {self.grades}; got {grade!r}")
        return self.grades.index(grade)

    def to_list(self) -> list[dict[str, Any]]:
        """Bands as plain dicts (saved in ``model.json``)."""
        return [
            {"grade": b.grade, "upper": b.upper, "supervision_class": b.supervision_class}
            for b in self._bands
        ]

    @classmethod
    def from_list(cls, bands: list[dict[str, Any]]) -> MasterScale:
        """Rebuild from :meth:`to_list` output or the ``master_scale`` config block."""
        return cls(bands)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterScale) and self._bands == other._bands

    def __repr__(self) -> str:
        return f"MasterScale({self.grades})"


def default_scales(
    config: dict[str, Any] | None = None,
) -> tuple[ScoreScale, MasterScale, float]:
    """Return the configured score scale, master scale and PD floor.

    Parameters
    ----------
    config : dict, optional
        A parsed model configuration; read from ``training/config/model.yaml`` when omitted.

    Returns
    -------
    tuple
        ``(ScoreScale, MasterScale, pd_floor)``.
    """
    cfg = config or load_config()
    floor = float(cfg.get("pd_floor", PD_FLOOR))
    return ScoreScale.from_dict(cfg["score_scale"]), MasterScale(cfg["master_scale"]), floor
