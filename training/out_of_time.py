"""The out-of-time protocol: train on the earliest dates, validate on the next, test on the latest.

:func:`train_credit` runs it on the ``kuaxin dataset`` table (``usc_code, as_of, label, …``);
``kuaxin train --table --time COL`` runs it on any table with a time column.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from training.boosting import fit_booster, lgb_params
from training.calibration import platt
from training.challenger import challenger_pd, fit_challenger
from training.cycle import apply_calibration_mode
from training.metrics import binary_metrics
from training.model import features_from_catalog
from training.result import TrainResult, _labels, _model_version, _stub, _window, fingerprint
from training.scale import load_config
from training.search import search_holdout
from training.split import time_split
from training.table_prep import apply_directions


def train_time_split(
    df: pd.DataFrame,
    feature_names: list[str],
    catalog: Any = None,
    config: dict[str, Any] | None = None,
    trials: int | None = None,
    time_col: str = "as_of",
    label_col: str = "label",
    num_threads: int = 1,
    progress: bool = False,
    directions: dict[str, int] | None = None,
) -> TrainResult:
    """Train, calibrate and evaluate with a train / validation / out-of-time test split.

    Parameters
    ----------
    df : DataFrame
        Labelled rows with ``time_col``, ``label_col`` and the features.
    feature_names : list of str
        Feature columns in model order.
    catalog : features.catalog.Catalog, optional
        Monotone constraints, categorical columns and reason texts.
    config : dict, optional
        Model configuration (``training/config/model.yaml`` by default).
    trials : int, optional
        Search budget (config ``search.trials`` by default; 0 = LightGBM defaults).
    time_col, label_col : str
        Column names.
    num_threads : int
        LightGBM threads for training.
    progress : bool
        Show the search's progress bar.
    directions : dict, optional
        Monotone constraints per numeric column (a table's direction file).

    Returns
    -------
    TrainResult
    """
    cfg = config or load_config()
    search = cfg["search"]
    budget = int(search["trials"] if trials is None else trials)
    df = df.reset_index(drop=True)
    y = _labels(df[label_col], label_col)
    times = pd.to_datetime(df[time_col])
    tr, va, te = time_split(times, cfg["split"]["test_share"], cfg["split"]["validation_share"])
    _check_windows(y, tr, va, te)
    catalog_yaml = catalog.to_yaml() if catalog is not None else None
    features = apply_directions(
        features_from_catalog(catalog, feature_names, df.loc[tr]), directions
    )
    model = _stub(features, cfg, catalog_yaml)
    x = model.matrix(df)
    t0 = time.perf_counter()
    params, rounds, trials_df = search_holdout(
        x[tr], y[tr], x[va], y[va], features, search, budget, num_threads, progress
    )
    search_seconds = time.perf_counter() - t0
    model, valid_pd, fit_rows, final_rounds, calibration_mode = _fit_calibrate_refit(
        model, df, x, y, times, (tr, va), params, rounds, cfg, num_threads
    )
    refit = bool(cfg["split"].get("refit_on_validation", False))
    test_pd = model.predict_pd(df.loc[te], num_threads)
    challenger = fit_challenger(df.loc[fit_rows], y[fit_rows], features, cfg)
    chall_pd = challenger_pd(challenger, df.loc[te], features)
    bins = int(cfg["report"]["calibration_bins"])
    lgb_test = binary_metrics(y[te], test_pd, bins)
    chall_test = binary_metrics(y[te], chall_pd, bins)
    fp = fingerprint(df[[time_col, label_col, *feature_names]])
    model.version = _model_version(fp)
    windows = {k: _window(times[m]) for k, m in (("train", tr), ("validation", va), ("test", te))}
    model.metadata = {
        "protocol": "out_of_time",
        "windows": windows,
        "rows": {"train": int(tr.sum()), "validation": int(va.sum()), "test": int(te.sum())},
        "data_fingerprint": fp,
        "params": params,
        "rounds": final_rounds,
        "refit_on_validation": refit,
        "calibration_mode": calibration_mode,
        "test_metrics": {k: lgb_test[k] for k in ("auc", "ece", "brier", "log_loss", "ks")},
    }
    metrics: dict[str, Any] = {
        "protocol": {
            "kind": "out_of_time",
            "description": _description(refit),
            "windows": windows,
            "rows": model.metadata["rows"],
            "trials": budget,
            "search_seconds": search_seconds,
        },
        "lightgbm": {"test": lgb_test, "validation": binary_metrics(y[va], valid_pd, bins)},
        "challenger": {"test": chall_test},
        "lightgbm_beats_challenger": lgb_test["auc"] > chall_test["auc"],
        "params": {**params, "rounds": final_rounds, "rounds_on_train": rounds},
        "calibration": model.calibration,
        "calibration_mode": calibration_mode,
        "data_fingerprint": fp,
        "model_version": model.version,
    }
    eval_frame = df.loc[te].assign(pd=test_pd, challenger_pd=chall_pd, label=y[te])
    return TrainResult(
        model=model,
        challenger=challenger,
        metrics=metrics,
        trials=trials_df,
        eval_frame=eval_frame,
        train_frame=df.loc[fit_rows],
        params={**params, "rounds": final_rounds},
    )


def _fit_calibrate_refit(
    model: Any,
    df: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    times: pd.Series,
    masks: tuple[np.ndarray, np.ndarray],
    params: dict[str, Any],
    rounds: int,
    cfg: dict[str, Any],
    num_threads: int,
) -> tuple[Any, np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Fit on train, calibrate on validation (PIT or TTC), refit on both when configured.

    Returns ``(model, validation PD, rows of the final fit, final rounds, calibration mode)``.
    """
    tr, va = masks
    features = model.features
    full_params = lgb_params(features, params, int(cfg["search"]["seed"]), num_threads)
    model.booster = fit_booster(x[tr], y[tr], features, full_params, rounds)
    # Platt map on the validation window, out of sample for the train-window booster.
    model.calibration = platt(model.margin(df.loc[va], num_threads), y[va])
    # PIT keeps this map; TTC shifts it to the long-run default rate (training/cycle.py).
    calibration_mode = apply_calibration_mode(model, df, y, times, tr | va, va, cfg, num_threads)
    valid_pd = model.predict_pd(df.loc[va], num_threads)
    refit = bool(cfg["split"].get("refit_on_validation", False))
    fit_rows = tr | va if refit else tr
    final_rounds = rounds
    if refit:
        # The latest history matters most when features drift: refit on train + validation
        # with the same parameters, rounds scaled by the row count; the Platt map carries over
        # (its fit on the test window is checked by the test-window ECE, not assumed).
        final_rounds = max(1, round(rounds * fit_rows.sum() / tr.sum()))
        model.booster = fit_booster(x[fit_rows], y[fit_rows], features, full_params, final_rounds)
    return model, valid_pd, fit_rows, final_rounds, calibration_mode


def _check_windows(y: np.ndarray, *masks: np.ndarray) -> None:
    for name, mask in zip(("train", "validation", "test"), masks, strict=True):
        if len(np.unique(y[mask])) < 2:
            raise ValueError(
                f"the {name} window must contain defaults and non-defaults; it does not"
            )


def _description(refit: bool) -> str:
    return (
        "Time-ordered split of the as-of dates: LightGBM trained on the train window; "
        "early stopping, the hyperparameter search objective (validation AUC) and the "
        "Platt calibration use the validation window"
        + (
            "; the final booster is then refit on train + validation with the chosen "
            "parameters (rounds scaled by row count) and keeps that Platt map"
            if refit
            else ""
        )
        + ". All test metrics are on the out-of-time test window, which neither the "
        "search nor the calibration sees. The logistic challenger is fitted on the same "
        "rows as the final booster and scored on the same test window. 'validation' "
        "metrics are of the train-window booster."
    )


def train_credit(
    df: pd.DataFrame,
    catalog: Any = None,
    config: dict[str, Any] | None = None,
    trials: int | None = None,
    num_threads: int = 1,
    progress: bool = False,
) -> TrainResult:
    """Train on the ``kuaxin dataset`` table with the out-of-time protocol.

    Parameters
    ----------
    df : DataFrame
        ``usc_code, as_of, label, default_date, name`` then the catalog features.
    catalog : features.catalog.Catalog, optional
        Loaded with ``features.catalog.load_catalog()`` when omitted.
    config : dict, optional
        Model configuration.
    trials : int, optional
        Search budget.
    num_threads : int
        LightGBM threads.
    progress : bool
        Show progress.

    Returns
    -------
    TrainResult
    """
    for col in ("usc_code", "as_of", "label"):
        if col not in df.columns:
            raise ValueError(f"training set must have column {col!r}; it does not")
    if catalog is None:
        from features.catalog import load_catalog

        catalog = load_catalog()
    names = [n for n in catalog.names if n in df.columns]
    missing = [n for n in catalog.names if n not in df.columns]
    if missing:
        raise ValueError(f"training set must have every catalog feature; missing {missing[:10]}")
    return train_time_split(
        df, names, catalog, config, trials, num_threads=num_threads, progress=progress
    )
