"""Training entry points, re-exported from the modules that hold each step.

- :mod:`training.split` — the time-ordered train / validation / test split.
- :mod:`training.boosting` — LightGBM parameters and one booster fit.
- :mod:`training.search` — the optuna searches (validation window, K-fold CV).
- :mod:`training.calibration` — the Platt map.
- :mod:`training.challenger` — the logistic-regression challenger.
- :mod:`training.result` — :class:`TrainResult` and lineage helpers.
- :mod:`training.out_of_time` — :func:`train_credit` and :func:`train_time_split`.
- :mod:`training.table` — :func:`train_table` for any labelled table (nested CV).
"""

from __future__ import annotations

from training.boosting import DEFAULT_ROUNDS, LGB_DEFAULTS, fit_booster, lgb_params
from training.calibration import platt
from training.challenger import challenger_pd, fit_challenger
from training.out_of_time import train_credit, train_time_split
from training.result import META_COLUMNS, TrainResult, _stub, fingerprint
from training.search import search_cv, search_holdout, suggest_params
from training.split import time_split
from training.table import read_table, train_table

__all__ = [
    "DEFAULT_ROUNDS",
    "LGB_DEFAULTS",
    "META_COLUMNS",
    "TrainResult",
    "_stub",
    "challenger_pd",
    "fingerprint",
    "fit_booster",
    "fit_challenger",
    "lgb_params",
    "platt",
    "read_table",
    "search_cv",
    "search_holdout",
    "suggest_params",
    "time_split",
    "train_credit",
    "train_table",
    "train_time_split",
]
