"""LightGBM: the full parameter set (objective, constraints, determinism) and one fit.

``LGB_DEFAULTS`` writes LightGBM's own defaults out: the first trial of every search and the
"defaults" baseline of the table protocol.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

from training.model import FeatureInfo

#: LightGBM's own defaults, written out: the first trial of every search and the "defaults"
#: baseline of the table protocol.
LGB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 0.0,
    "min_split_gain": 0.0,
    "cat_smooth": 10.0,
}


DEFAULT_ROUNDS = 100


def lgb_params(
    features: list[FeatureInfo], params: dict[str, Any], seed: int, num_threads: int
) -> dict[str, Any]:
    """Full LightGBM parameter dict: objective, constraints, determinism and ``params``.

    ``num_threads`` defaults to 1 throughout: on this 2-core machine shared with other jobs,
    LightGBM's OpenMP threads spin-wait, and 2 threads burned 15x the CPU of 1 thread for the
    same 50 rounds (benchmarks/results_train.md).
    """
    out: dict[str, Any] = {
        "objective": "binary",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": num_threads,
        "max_cat_to_onehot": 4,
        # the search varies min_child_samples on one Dataset, which pre-filtering forbids
        "feature_pre_filter": False,
    }
    if any(f.monotone for f in features):
        # only when constrained: an all-zero list still runs the constrained split search,
        # 1.5x slower and not LightGBM's defaults
        out["monotone_constraints"] = [f.monotone for f in features]
    out.update(params)
    if out.get("bagging_fraction", 1.0) < 1.0:
        out["bagging_freq"] = 1
    return out


def _dataset(x: np.ndarray, y: np.ndarray, features: list[FeatureInfo]) -> lgb.Dataset:
    cats = [j for j, f in enumerate(features) if f.kind == "category"]
    return lgb.Dataset(
        x,
        label=y,
        feature_name=[f.name for f in features],
        categorical_feature=cats or "auto",
        free_raw_data=False,
        # the search varies min_child_samples on one Dataset, which pre-filtering forbids
        params={"feature_pre_filter": False},
    )


def fit_booster(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    params: dict[str, Any],
    rounds: int,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    early_stopping: int | None = None,
) -> lgb.Booster:
    """Train one booster, with early stopping on ``valid`` when given.

    Parameters
    ----------
    x, y : ndarray
        Training matrix (see :meth:`CreditModel.matrix`) and 0/1 labels.
    features : list of FeatureInfo
        Feature descriptions (names, categorical columns).
    params : dict
        Full LightGBM parameters (see :func:`lgb_params`).
    rounds : int
        Maximum number of boosting rounds.
    valid : tuple of ndarray, optional
        Validation matrix and labels for early stopping.
    early_stopping : int, optional
        Patience in rounds.

    Returns
    -------
    lightgbm.Booster
        Truncated to the best iteration when early stopping ran.
    """
    train_set = _dataset(x, y, features)
    callbacks: list[Any] = []
    valid_sets = []
    if valid is not None:
        valid_sets = [lgb.Dataset(valid[0], label=valid[1], reference=train_set)]
        if early_stopping:
            callbacks.append(lgb.early_stopping(early_stopping, verbose=False))
    booster = lgb.train(
        {**params, "metric": "binary_logloss"},
        train_set,
        num_boost_round=rounds,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    if valid is not None and early_stopping and booster.best_iteration > 0:
        booster = lgb.Booster(
            model_str=booster.model_to_string(num_iteration=booster.best_iteration)
        )
    return booster
