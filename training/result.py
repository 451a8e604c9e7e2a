"""What a training run produces, and the lineage helpers every protocol shares.

:class:`TrainResult` carries the model, metrics, trials and evaluation rows to the report and
the registry; :func:`fingerprint` and :func:`model_version` tie a model to the exact rows it
was trained on; :func:`stub_model` is the uncalibrated model a protocol fills in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from training.model import CreditModel, FeatureInfo
from training.scale import default_scales

#: Columns of the training set that are keys or labels, never features.
META_COLUMNS = ("usc_code", "as_of", "label", "default_date", "name")


@dataclass
class TrainResult:
    """Everything a training run produces.

    Attributes
    ----------
    model : CreditModel
        The calibrated champion candidate.
    challenger : Pipeline or None
        The logistic-regression challenger (fitted on the training window).
    metrics : dict
        JSON-ready metrics, protocol description and split windows.
    trials : DataFrame
        One row per search trial (parameters, objective, rounds).
    eval_frame : DataFrame
        The evaluation rows (test window, or out-of-fold rows) with ``label``, ``pd``,
        ``challenger_pd`` and the features, for the report.
    train_frame : DataFrame
        The training rows (features), the PSI reference.
    params : dict
        The chosen LightGBM parameters and number of rounds.
    """

    model: CreditModel
    challenger: Pipeline | None
    metrics: dict[str, Any]
    trials: pd.DataFrame
    eval_frame: pd.DataFrame
    train_frame: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of a frame (rows, columns and values), for data lineage."""
    import hashlib

    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _model_version(fp: str) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + fp[:8]


def _window(times: pd.Series) -> list[str]:
    return [str(pd.Timestamp(times.min()).date()), str(pd.Timestamp(times.max()).date())]


def _stub(
    features: list[FeatureInfo], config: dict[str, Any], catalog_yaml: str | None
) -> CreditModel:
    score_scale, master_scale, floor = default_scales(config)
    return CreditModel(
        booster=None,  # type: ignore[arg-type]  # filled in once trained
        features=features,
        calibration={"intercept": 0.0, "slope": 1.0},
        score_scale=score_scale,
        master_scale=master_scale,
        pd_floor=floor,
        catalog_yaml=catalog_yaml,
    )


def _labels(series: pd.Series, name: str) -> np.ndarray:
    from training.table_prep import labels

    return labels(series, name)
