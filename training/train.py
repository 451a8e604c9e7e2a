"""Training: time-ordered split, LightGBM with monotone constraints, optuna search, Platt
calibration, the logistic challenger, and the cross-validated protocol for any labelled table.

Two entry points share every step:

- :func:`train_credit` trains on the ``kuaxin dataset`` table (``usc_code, as_of, label, …``)
  with an out-of-time split by ``as_of``: train on the earliest as-of dates, validate (early
  stopping, search objective, calibration) on the next ones, test on the latest ones, which
  the search never sees.
- :func:`train_table` trains on any labelled table; with a time column it uses the same split,
  without one it runs stratified K-fold cross-validation, nested (the search runs inside each
  outer training fold) when configured.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.cycle import apply_calibration_mode
from training.metrics import binary_metrics
from training.model import CreditModel, FeatureInfo, features_from_catalog
from training.scale import default_scales, load_config

log = logging.getLogger(__name__)

#: Columns of the training set that are keys or labels, never features.
META_COLUMNS = ("usc_code", "as_of", "label", "default_date", "name")

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


# ---------------------------------------------------------------------------- splitting
def time_split(
    times: pd.Series, test_share: float, validation_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows by their as-of date into train, validation and test masks.

    Parameters
    ----------
    times : Series
        As-of date of each row.
    test_share, validation_share : float
        Shares of the distinct as-of dates (latest first) in the test and validation windows.

    Returns
    -------
    tuple of ndarray of bool
        ``(train, valid, test)`` masks; every train date precedes every valid date, which
        precedes every test date.
    """
    dates = np.sort(pd.Series(times).dropna().unique())
    if len(dates) < 3:
        raise ValueError(f"time column must have at least 3 distinct dates; got {len(dates)}")
    n_test = max(1, round(len(dates) * test_share))
    n_valid = max(1, round(len(dates) * validation_share))
    if n_test + n_valid >= len(dates):
        n_test, n_valid = 1, 1
    test_start = dates[len(dates) - n_test]
    valid_start = dates[len(dates) - n_test - n_valid]
    t = pd.Series(times).to_numpy()
    test = t >= test_start
    valid = (t >= valid_start) & ~test
    train = t < valid_start
    return train, valid, test


# ---------------------------------------------------------------------------- LightGBM
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
        "monotone_constraints": [f.monotone for f in features],
        "max_cat_to_onehot": 4,
        # the search varies min_child_samples on one Dataset, which pre-filtering forbids
        "feature_pre_filter": False,
    }
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


# ---------------------------------------------------------------------------- calibration
def platt(margin: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Fit ``P(default) = sigmoid(a + b * margin)`` by unpenalised logistic regression.

    Returns
    -------
    dict
        ``{"intercept": a, "slope": b}``.
    """
    lr = LogisticRegression(C=np.inf, max_iter=1000)
    lr.fit(np.asarray(margin).reshape(-1, 1), np.asarray(y, dtype=int))
    return {"intercept": float(lr.intercept_[0]), "slope": float(lr.coef_[0, 0])}


# ---------------------------------------------------------------------------- challenger
def fit_challenger(
    frame: pd.DataFrame, y: np.ndarray, features: list[FeatureInfo], config: dict[str, Any]
) -> Pipeline:
    """Logistic-regression challenger on the same features.

    Numeric features: median imputation with missing indicators, clipping to the 1st-99th
    training percentiles (ratios have extreme tails), standardisation. Categorical features:
    one-hot with unseen levels ignored.
    """
    numeric = [f.name for f in features if f.kind == "numeric"]
    categorical = [f.name for f in features if f.kind == "category"]
    transformers: list[Any] = []
    if numeric:
        transformers.append(
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True),
                    _Clipper(),
                    StandardScaler(),
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            )
        )
    cfg = config.get("challenger", {})
    pipe = Pipeline(
        [
            ("prep", ColumnTransformer(transformers)),
            (
                "lr",
                LogisticRegression(
                    C=float(cfg.get("C", 1.0)), max_iter=int(cfg.get("max_iter", 2000))
                ),
            ),
        ]
    )
    pipe.fit(_challenger_input(frame, features), np.asarray(y, dtype=int))
    return pipe


def challenger_pd(pipe: Pipeline, frame: pd.DataFrame, features: list[FeatureInfo]) -> np.ndarray:
    """PD of the challenger."""
    return np.asarray(pipe.predict_proba(_challenger_input(frame, features))[:, 1])


def _challenger_input(frame: pd.DataFrame, features: list[FeatureInfo]) -> pd.DataFrame:
    out = {}
    for f in features:
        col = frame[f.name]
        out[f.name] = col.astype(object) if f.kind == "category" else col.astype("float64")
    return pd.DataFrame(out, index=frame.index)


class _Clipper:
    """Clip each column to its 1st-99th training percentiles (sklearn transformer)."""

    def fit(self, x: np.ndarray, y: Any = None) -> _Clipper:
        self.lo_ = np.nanpercentile(x, 1, axis=0)
        self.hi_ = np.nanpercentile(x, 99, axis=0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lo_, self.hi_)

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x, y).transform(x)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> _Clipper:
        return self


# ---------------------------------------------------------------------------- helpers
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
    values = series.dropna().unique()
    if series.isna().any():
        raise ValueError(f"{name} must have no missing values; got {int(series.isna().sum())}")
    if set(pd.Series(values).astype(str)) <= {"0", "1", "0.0", "1.0", "True", "False"}:
        return series.astype(str).isin(["1", "1.0", "True"]).to_numpy(dtype=int)
    raise ValueError(f"{name} must be 0/1; got values {sorted(map(str, values))[:5]}")


# ---------------------------------------------------------------------------- time-split path
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
    for name, mask in (("train", tr), ("validation", va), ("test", te)):
        if len(np.unique(y[mask])) < 2:
            raise ValueError(
                f"the {name} window must contain defaults and non-defaults; it does not"
            )
    catalog_yaml = catalog.to_yaml() if catalog is not None else None
    features = features_from_catalog(catalog, feature_names, df.loc[tr])
    model = _stub(features, cfg, catalog_yaml)
    x = model.matrix(df)
    t0 = time.perf_counter()
    params, rounds, trials_df = search_holdout(
        x[tr], y[tr], x[va], y[va], features, search, budget, num_threads, progress
    )
    search_seconds = time.perf_counter() - t0
    full_params = lgb_params(features, params, int(search["seed"]), num_threads)
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
    test_pd = model.predict_pd(df.loc[te], num_threads)
    challenger = fit_challenger(df.loc[fit_rows], y[fit_rows], features, cfg)
    chall_pd = challenger_pd(challenger, df.loc[te], features)
    bins = int(cfg["report"]["calibration_bins"])
    lgb_test = binary_metrics(y[te], test_pd, bins)
    chall_test = binary_metrics(y[te], chall_pd, bins)
    fp = fingerprint(df[[time_col, label_col, *feature_names]])
    model.version = _model_version(fp)
    windows = {
        "train": _window(times[tr]),
        "validation": _window(times[va]),
        "test": _window(times[te]),
    }
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
            "description": (
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
            ),
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
    eval_frame = df.loc[te].copy()
    eval_frame["pd"] = test_pd
    eval_frame["challenger_pd"] = chall_pd
    eval_frame["label"] = y[te]
    return TrainResult(
        model=model,
        challenger=challenger,
        metrics=metrics,
        trials=trials_df,
        eval_frame=eval_frame,
        train_frame=df.loc[fit_rows],
        params={**params, "rounds": final_rounds},
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


# ---------------------------------------------------------------------------- any table
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
    from sklearn.metrics import roc_auc_score
    from tqdm.auto import tqdm

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
    final_params = lgb_params(features, params, seed, num_threads)
    oof_margin = np.zeros(len(y))
    for tr, te in outer:
        b = fit_booster(x[tr], y[tr], features, final_params, rounds)
        oof_margin[te] = b.predict(x[te], raw_score=True)
    model.booster = fit_booster(x, y, features, final_params, rounds)
    model.calibration = platt(oof_margin, y)
    oof_pd = model.floor(model.calibrate(oof_margin))
    bins = int(cfg["report"]["calibration_bins"])
    fp = fingerprint(df[[target, *names]])
    model.version = _model_version(fp)

    def summary(key: str) -> dict[str, Any]:
        return {
            "fold_auc": fold_auc[key],
            "mean_auc": float(np.mean(fold_auc[key])),
            "std_auc": float(np.std(fold_auc[key], ddof=1)),
            "pooled_oof_auc": float(roc_auc_score(y, oof[key])),
        }

    protocol = {
        "kind": "nested_stratified_cv" if is_nested else "stratified_cv",
        "folds": k,
        "inner_folds": inner if is_nested else None,
        "seed": seed,
        "trials": budget,
        "description": (
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
        ),
        "cv_seconds": cv_seconds,
    }
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "defaults": summary("defaults"),
        "tuned": summary("tuned"),
        "challenger": summary("challenger"),
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
    eval_frame = df[names].copy()
    eval_frame["label"] = y
    eval_frame["pd"] = oof_pd
    eval_frame["challenger_pd"] = oof["challenger"]
    return TrainResult(
        model=model,
        challenger=None,
        metrics=metrics,
        trials=trials_df,
        eval_frame=eval_frame,
        train_frame=df[names],
        params={**params, "rounds": rounds},
    )
