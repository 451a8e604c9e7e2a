"""Hyperparameter search with optuna: on a validation window, or by K-fold CV AUC."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.boosting import LGB_DEFAULTS, _dataset, fit_booster, lgb_params
from training.model import FeatureInfo


def suggest_params(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one parameter set from the configured search space."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space["learning_rate"], log=True),
        "num_leaves": trial.suggest_int("num_leaves", *space["num_leaves"], log=True),
        "min_child_samples": trial.suggest_int(
            "min_child_samples", *space["min_child_samples"], log=True
        ),
        "feature_fraction": trial.suggest_float("feature_fraction", *space["feature_fraction"]),
        "bagging_fraction": trial.suggest_float("bagging_fraction", *space["bagging_fraction"]),
        "lambda_l2": trial.suggest_float("lambda_l2", *space["lambda_l2"], log=True),
        "min_split_gain": trial.suggest_float("min_split_gain", *space["min_split_gain"]),
        "cat_smooth": trial.suggest_float("cat_smooth", *space["cat_smooth"]),
    }


def _study(seed: int, startup: int = 10) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # Trial 0 is LightGBM's defaults, so the search can only improve on them (on its objective).
    study.enqueue_trial({**LGB_DEFAULTS, "lambda_l2": 1e-3})
    return study


def _trials_frame(study: Any) -> pd.DataFrame:
    frame = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs", "duration"))
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds()
    return frame


def search_holdout(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_va: np.ndarray,
    y_va: np.ndarray,
    features: list[FeatureInfo],
    search: dict[str, Any],
    trials: int,
    num_threads: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], int, pd.DataFrame]:
    """Optuna search scored by validation AUC, early stopping on validation log loss.

    Returns
    -------
    tuple
        ``(best params, best number of rounds, trials table)``; with ``trials <= 0`` LightGBM's
        defaults with early stopping and an empty table.
    """
    from sklearn.metrics import roc_auc_score

    seed = int(search["seed"])

    def run(params: dict[str, Any]) -> tuple[float, int]:
        booster = fit_booster(
            x_tr,
            y_tr,
            features,
            lgb_params(features, params, seed, num_threads),
            int(search["max_rounds"]),
            (x_va, y_va),
            int(search["early_stopping_rounds"]),
        )
        auc = float(roc_auc_score(y_va, booster.predict(x_va, raw_score=True)))
        return auc, booster.num_trees()

    if trials <= 0:
        _, rounds = run(dict(LGB_DEFAULTS))
        return dict(LGB_DEFAULTS), rounds, pd.DataFrame()

    study = _study(seed, int(search.get("startup_trials", 10)))

    def objective(trial: Any) -> float:
        auc, rounds = run(suggest_params(trial, search))
        trial.set_user_attr("rounds", rounds)
        return auc

    study.optimize(objective, n_trials=trials, show_progress_bar=progress)
    best = study.best_trial
    return dict(best.params), int(best.user_attrs["rounds"]), _trials_frame(study)


def search_cv(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    search: dict[str, Any],
    trials: int,
    folds: int,
    num_threads: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], int, pd.DataFrame]:
    """Optuna search scored by stratified K-fold CV AUC (``lightgbm.cv``, early stopping on AUC).

    Returns
    -------
    tuple
        ``(best params, best number of rounds, trials table)``.
    """
    seed = int(search["seed"])
    data = _dataset(x, y, features)

    def run(params: dict[str, Any]) -> tuple[float, int]:
        res = lgb.cv(
            {**lgb_params(features, params, seed, num_threads), "metric": "auc"},
            data,
            num_boost_round=int(search["max_rounds"]),
            folds=list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)),
            callbacks=[lgb.early_stopping(int(search["early_stopping_rounds"]), verbose=False)],
        )
        curve = list(res["valid auc-mean"])  # type: ignore[arg-type]
        return float(max(curve)), int(np.argmax(curve)) + 1

    study = _study(seed, int(search.get("startup_trials", 10)))

    def objective(trial: Any) -> float:
        auc, rounds = run(suggest_params(trial, search))
        trial.set_user_attr("rounds", rounds)
        return auc

    study.optimize(objective, n_trials=max(trials, 1), show_progress_bar=progress)
    best = study.best_trial
    return dict(best.params), int(best.user_attrs["rounds"]), _trials_frame(study)
