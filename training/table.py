"""Any labelled table: reading it and the (nested) stratified cross-validation protocol.

With a time column :func:`train_table` hands over to the out-of-time protocol of
:mod:`training.out_of_time`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.boosting import DEFAULT_ROUNDS, LGB_DEFAULTS, fit_booster, lgb_params
from training.challenger import challenger_pd, fit_challenger
from training.metrics import binary_metrics
from training.model import features_from_catalog
from training.out_of_time import train_time_split
from training.result import TrainResult, _labels, _model_version, _stub, fingerprint
from training.scale import load_config
from training.search import search_cv


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV (``?`` and empty cells are missing) or Parquet table."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"table file {p} must exist; it does not")
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    return pd.read_csv(p, na_values=["?", ""], keep_default_na=True)


def train_table(
    df: pd.DataFrame,
    target: str,
    id_col: str | None = None,
    time_col: str | None = None,
    config: dict[str, Any] | None = None,
    trials: int | None = None,
    folds: int | None = None,
    nested: bool | None = None,
    num_threads: int = 1,
    progress: bool = False,
) -> TrainResult:
    """Train the same pipeline on any labelled table.

    Parameters
    ----------
    df : DataFrame
        Features, the target and optional id and time columns. Missing values are kept as
        given; non-numeric columns are categorical.
    target : str
        0/1 target column.
    id_col, time_col : str, optional
        Row id (excluded from features) and as-of date (enables the out-of-time protocol).
    config : dict, optional
        Model configuration.
    trials : int, optional
        Search budget per search (config ``table.trials`` by default).
    folds : int, optional
        Outer folds (config ``table.folds``).
    nested : bool, optional
        Search inside each outer fold (config ``table.nested``).
    num_threads : int
        LightGBM threads.
    progress : bool
        Show progress.

    Returns
    -------
    TrainResult
    """
    cfg = config or load_config()
    for col in (target, id_col, time_col):
        if col is not None and col not in df.columns:
            raise ValueError(
                f"table must have column {col!r}; columns are {list(df.columns)[:10]}…"
            )
    names = [c for c in df.columns if c not in {target, id_col, time_col}]
    if not names:
        raise ValueError("table must have at least one feature column besides target/id/time")
    if time_col is not None:
        frame = df.rename(columns={time_col: "as_of", target: "label"})
        return train_time_split(
            frame,
            names,
            None,
            cfg,
            trials if trials is not None else int(cfg["table"]["trials"]),
            num_threads=num_threads,
            progress=progress,
        )
    return _train_cv(df, target, names, cfg, trials, folds, nested, num_threads, progress)


def _scale_rounds(rounds: int, folds: int) -> int:
    """Scale rounds found by K-fold early stopping to a fit on all K folds' rows."""
    return max(1, round(rounds * folds / (folds - 1)))


def _train_cv(
    df: pd.DataFrame,
    target: str,
    names: list[str],
    cfg: dict[str, Any],
    trials: int | None,
    folds: int | None,
    nested: bool | None,
    num_threads: int,
    progress: bool,
) -> TrainResult:
    tcfg = cfg["table"]
    search = {**cfg["search"], **tcfg.get("search", {})}
    budget = int(tcfg["trials"] if trials is None else trials)
    k = int(tcfg["folds"] if folds is None else folds)
    is_nested = bool(tcfg["nested"] if nested is None else nested)
    inner = int(tcfg["inner_folds"])
    seed = int(tcfg["seed"])
    df = df.reset_index(drop=True)
    y = _labels(df[target], target)
    features = features_from_catalog(None, names, df)
    model = _stub(features, cfg, None)
    x = model.matrix(df)
    outer = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))

    t0 = time.perf_counter()
    if not is_nested:
        params, rounds, trials_df = search_cv(
            x, y, features, search, budget, k, num_threads, progress
        )
        rounds = _scale_rounds(rounds, k)
    oof, fold_auc, fold_params, trial_tables = _outer_cv(
        df,
        x,
        y,
        features,
        outer,
        cfg,
        search,
        budget,
        inner,
        is_nested,
        None if is_nested else (params, rounds),
        num_threads,
        progress,
    )
    cv_seconds = time.perf_counter() - t0

    # The final model: search on all rows (inner CV), fit on all rows, and calibrate on
    # out-of-fold margins of that configuration (cross-fitted, so calibration is out of sample).
    if is_nested:
        params, rounds, trials_df = search_cv(
            x, y, features, search, budget, k, num_threads, progress
        )
        rounds = _scale_rounds(rounds, k)
        trial_tables.append(trials_df.assign(outer_fold="final"))
        trials_df = pd.concat(trial_tables, ignore_index=True)
    oof_margin = _fit_final(model, x, y, outer, params, rounds, seed, num_threads)
    oof_pd = model.floor(model.calibrate(oof_margin))
    bins = int(cfg["report"]["calibration_bins"])
    fp = fingerprint(df[[target, *names]])
    model.version = _model_version(fp)

    protocol = {
        "kind": "nested_stratified_cv" if is_nested else "stratified_cv",
        "folds": k,
        "inner_folds": inner if is_nested else None,
        "seed": seed,
        "trials": budget,
        "description": _cv_description(k, seed, budget, inner, is_nested),
        "cv_seconds": cv_seconds,
    }
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "defaults": _summary(fold_auc["defaults"], y, oof["defaults"]),
        "tuned": _summary(fold_auc["tuned"], y, oof["tuned"]),
        "challenger": _summary(fold_auc["challenger"], y, oof["challenger"]),
        "tuned_beats_defaults": float(np.mean(fold_auc["tuned"]))
        > float(np.mean(fold_auc["defaults"])),
        "calibrated_oof": binary_metrics(y, oof_pd, bins),
        "fold_params": fold_params,
        "params": {**params, "rounds": rounds},
        "calibration": model.calibration,
        "rows": len(y),
        "defaults_in_data": int(y.sum()),
        "data_fingerprint": fp,
        "model_version": model.version,
    }
    model.metadata = {
        "protocol": protocol["kind"],
        "rows": {"train": len(y)},
        "data_fingerprint": fp,
        "params": params,
        "rounds": rounds,
        "test_metrics": {
            "auc": metrics["tuned"]["mean_auc"],
            "ece": metrics["calibrated_oof"]["ece"],
        },
    }
    eval_frame = df[names].assign(label=y, pd=oof_pd, challenger_pd=oof["challenger"])
    return TrainResult(
        model=model,
        challenger=None,
        metrics=metrics,
        trials=trials_df,
        eval_frame=eval_frame,
        train_frame=df[names],
        params={**params, "rounds": rounds},
    )


def _fit_final(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    outer: list[tuple[np.ndarray, np.ndarray]],
    params: dict[str, Any],
    rounds: int,
    seed: int,
    num_threads: int,
) -> np.ndarray:
    """Fit the registered booster on all rows and return cross-fitted out-of-fold margins."""
    features = model.features
    final_params = lgb_params(features, params, seed, num_threads)
    oof_margin = np.zeros(len(y))
    for tr, te in outer:
        b = fit_booster(x[tr], y[tr], features, final_params, rounds)
        oof_margin[te] = b.predict(x[te], raw_score=True)
    model.booster = fit_booster(x, y, features, final_params, rounds)
    return oof_margin


def _summary(fold_auc: list[float], y: np.ndarray, oof: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    return {
        "fold_auc": fold_auc,
        "mean_auc": float(np.mean(fold_auc)),
        "std_auc": float(np.std(fold_auc, ddof=1)),
        "pooled_oof_auc": float(roc_auc_score(y, oof)),
    }


def _cv_description(k: int, seed: int, budget: int, inner: int, is_nested: bool) -> str:
    return (
        f"Stratified {k}-fold cross-validation (shuffled, seed {seed}); AUC is the mean of "
        "the per-fold AUCs. 'defaults': LightGBM default parameters (100 rounds). "
        + (
            f"'tuned': nested — in each outer fold an optuna search ({budget} trials, scored "
            f"by {inner}-fold CV AUC on the outer training rows only, early stopping inside "
            "the inner CV; rounds scaled by inner_folds/(inner_folds-1) for the refit) picks "
            "parameters and rounds; the outer test fold is never seen by "
            "the search. "
            if is_nested
            else f"'tuned': NOT nested — one optuna search ({budget} trials) scored by the "
            f"same {k}-fold CV picks the parameters, so its CV AUC is optimistically biased. "
        )
        + "'challenger': logistic regression in the same folds. The registered model is "
        "searched and fitted on all rows; its Platt calibration is fitted on out-of-fold "
        "margins, and 'calibrated_oof' metrics are on those."
    )


def _outer_cv(
    df: pd.DataFrame,
    x: np.ndarray,
    y: np.ndarray,
    features: list[Any],
    outer: list[tuple[np.ndarray, np.ndarray]],
    cfg: dict[str, Any],
    search: dict[str, Any],
    budget: int,
    inner: int,
    is_nested: bool,
    fixed: tuple[dict[str, Any], int] | None,
    num_threads: int,
    progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, list[float]], list[dict[str, Any]], list[pd.DataFrame]]:
    """Score defaults, tuned and challenger in each outer fold (searching inside when nested)."""
    from sklearn.metrics import roc_auc_score
    from tqdm.auto import tqdm

    seed = int(cfg["table"]["seed"])
    if fixed is not None:
        params, rounds = fixed
    oof = {"defaults": np.zeros(len(y)), "tuned": np.zeros(len(y)), "challenger": np.zeros(len(y))}
    fold_auc: dict[str, list[float]] = {key: [] for key in oof}
    fold_params: list[dict[str, Any]] = []
    trial_tables = []
    for i, (tr, te) in enumerate(tqdm(outer, desc="outer folds", disable=not progress)):
        default = fit_booster(
            x[tr],
            y[tr],
            features,
            lgb_params(features, LGB_DEFAULTS, seed, num_threads),
            DEFAULT_ROUNDS,
        )
        oof["defaults"][te] = default.predict(x[te], raw_score=True)
        if is_nested:
            params, rounds, trials_df = search_cv(
                x[tr], y[tr], features, search, budget, inner, num_threads, False
            )
            rounds = _scale_rounds(rounds, inner)
            trials_df.insert(0, "outer_fold", i)
            trial_tables.append(trials_df)
        fold_params.append({**params, "rounds": rounds})
        tuned = fit_booster(
            x[tr], y[tr], features, lgb_params(features, params, seed, num_threads), rounds
        )
        oof["tuned"][te] = tuned.predict(x[te], raw_score=True)
        chall = fit_challenger(df.loc[tr], y[tr], features, cfg)
        oof["challenger"][te] = challenger_pd(chall, df.loc[te], features)
        for key in oof:
            fold_auc[key].append(float(roc_auc_score(y[te], oof[key][te])))
    return oof, fold_auc, fold_params, trial_tables
