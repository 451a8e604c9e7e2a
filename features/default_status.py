"""The one definition of default: the label's default event, which snapshot conditions mean
"in default at as-of", and how such a firm is served (grade D, PD 1, no score). Labels
(:mod:`features.dataset`), batch scoring and serving all read ``features/config/default_status.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.values import plain


class DefaultStatusError(ValueError):
    """The in-default rules cannot be used (the message names the file, field or feature)."""


#: Where the shipped in-default rules live.
DEFAULT_STATUS_PATH = Path(__file__).parent / "config" / "default_status.yaml"

_OPS = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
    "==": np.equal,
}


class DefaultRule(BaseModel):
    """One snapshot condition that means the firm is in default at the as-of date."""

    model_config = ConfigDict(extra="forbid")

    feature: str = Field(min_length=1)
    op: Literal[">=", ">", "<=", "<", "=="]
    threshold: float
    text_en: str = Field(min_length=1)
    text_zh: str = Field(min_length=1)


class DefaultLabel(BaseModel):
    """The default event of the training label."""

    model_config = ConfigDict(extra="forbid")

    dpd_days: int = Field(default=90, ge=1, description="days past due that make a default")
    court_types: list[str] = Field(
        default_factory=lambda: ["enforcement", "dishonest_debtor"], min_length=1
    )


class DefaultStatus(BaseModel):
    """The in-default definition: any rule met puts the firm in default (see the YAML)."""

    model_config = ConfigDict(extra="forbid")

    grade: str = Field(default="D", min_length=1)
    supervision_class: str = Field(default="D", min_length=1)
    label: DefaultLabel = Field(default_factory=DefaultLabel)
    rules: list[DefaultRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _dpd_rules_match_the_label(self) -> DefaultStatus:
        # A dpd rule looser or stricter than the label would serve a firm the model never saw.
        for rule in self.rules:
            is_dpd = rule.feature.endswith("dpd") or "_dpd_" in rule.feature
            if is_dpd and rule.op == ">=" and rule.threshold != self.label.dpd_days:
                raise ValueError(
                    f"rule {rule.feature} threshold {rule.threshold:g} differs from "
                    f"label.dpd_days {self.label.dpd_days}"
                )
        return self


def load_default_status(path: Path | str | None = None) -> DefaultStatus:
    """Load the in-default rules (the shipped ``features/config/default_status.yaml`` by default).

    Raises
    ------
    DefaultStatusError
        The file is missing or does not hold valid rules (message names the file and field).
    """
    path = Path(path) if path is not None else DEFAULT_STATUS_PATH
    if not path.is_file():
        raise DefaultStatusError(f"default status {path} does not exist")
    try:
        return DefaultStatus.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except Exception as exc:  # YAML or validation errors: one message naming the file
        raise DefaultStatusError(f"default status {path} is not valid: {exc}") from exc


def default_flags(
    frame: pd.DataFrame, status: DefaultStatus
) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    """Which firms are in default, and the rules each one meets.

    Parameters
    ----------
    frame : DataFrame
        Snapshot rows (every rule's feature as a column).
    status : DefaultStatus

    Returns
    -------
    tuple of (ndarray of bool, list of list of dict)
        The in-default mask, and per firm the triggered rules as ``{feature, op, threshold,
        value, text_en, text_zh}`` (empty for performing firms).

    Raises
    ------
    DefaultStatusError
        A rule's feature is not in the snapshot.
    """
    missing = [r.feature for r in status.rules if r.feature not in frame.columns]
    if missing:
        raise DefaultStatusError(f"snapshot lacks the in-default features {', '.join(missing)}")
    n = len(frame)
    hit = np.zeros((n, len(status.rules)), dtype=bool)
    for j, rule in enumerate(status.rules):
        values = pd.to_numeric(frame[rule.feature], errors="coerce").to_numpy(np.float64)
        # A missing value (NaN) compares False: it never puts a firm in default.
        hit[:, j] = _OPS[rule.op](values, rule.threshold)
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for i, j in zip(*np.nonzero(hit), strict=True):
        rule = status.rules[j]
        reasons[i].append(
            {
                "feature": rule.feature,
                "op": rule.op,
                "threshold": rule.threshold,
                "value": plain(frame[rule.feature].iat[i]),
                "text_en": rule.text_en,
                "text_zh": rule.text_zh,
            }
        )
    flagged = np.asarray(hit.any(axis=1), dtype=bool)
    return flagged, reasons


def serve_default(scores: pd.DataFrame, flagged: np.ndarray, status: DefaultStatus) -> pd.DataFrame:
    """Keep the model's outputs as ``model_*`` and serve firms in default as the default grade.

    Parameters
    ----------
    scores : DataFrame
        The model's ``pd``, ``score``, ``grade``, ``supervision_class`` per firm.
    flagged : ndarray of bool
        Firms in default.
    status : DefaultStatus

    Returns
    -------
    DataFrame
        A copy with ``in_default`` and ``model_*`` columns; flagged rows get PD 1.0, no score
        (NaN: the score scale has no finite value at PD 1) and the default grade and class.
    """
    out = scores.copy()
    for col in ("pd", "score", "grade", "supervision_class"):
        out[f"model_{col}"] = out[col]
    out["in_default"] = flagged
    out["grade"] = out["grade"].astype(object)
    out["supervision_class"] = out["supervision_class"].astype(object)
    out.loc[flagged, "pd"] = 1.0
    out.loc[flagged, "score"] = np.nan
    out.loc[flagged, "grade"] = status.grade
    out.loc[flagged, "supervision_class"] = status.supervision_class
    return out
