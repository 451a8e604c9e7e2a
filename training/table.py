"""Any labelled table: the (nested) stratified cross-validation protocol and its final model.

:func:`train_table` prepares the table (:mod:`training.table_prep`), then either hands over to
the out-of-time protocol (a time column given) or runs stratified K-fold CV. Nested, each outer
fold's training rows get their own search (:func:`training.table_search.search_table`), so the
tuned out-of-fold scores — and their calibration, fitted on the inner out-of-fold margins of the
same search — come from choices that never saw the rows they score. One more search on all rows
gives the registered model. Searches run in parallel threads when cores are free.

The headline is ``tuned.mean_auc``, the mean of the per-fold AUCs: it is what the inner search
optimises (so choice and judgement agree), and its fold spread is reported; the pooled
out-of-fold AUC is reported beside it (it also rewards calibration across folds, which the
booster margins are not fitted for).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.bagging import fit_bagged, merge_boosters
from training.blend import Scorecard
from training.boosting import DEFAULT_ROUNDS, LGB_DEFAULTS, fit_booster, lgb_params
from training.calibration import platt
from training.challenger import challenger_pd, fit_challenger
from training.metrics import binary_metrics
from training.model import features_from_catalog
from training.out_of_time import train_time_split
from training.result import TrainResult, _model_version, _stub, fingerprint
from training.scale import load_config
from training.table_prep import (
    TableError,
    apply_directions,
    prepare_table,
    read_table,
)
from training.table_search import Choice, search_table

__all__ = ["TableError", "read_table", "train_table"]


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
    seconds: float | None = None,
    positive: str | None = None,
    directions: dict[str, int] | None = None,
    workers: int | None = None,
    master_scale: list[dict[str, Any]] | None = None,
) -> TrainResult:
    """Train the same pipeline on any labelled table.

    Parameters
    ----------
    df : DataFrame
        Features, the target and optional id and time columns (see
        :func:`training.table_prep.prepare_table` for what is dropped or converted).
    target : str
        Target column: 0/1, or two values with ``positive`` naming the default.
    id_col, time_col : str, optional
        Row id (excluded) and as-of date (enables the out-of-time protocol).
    config : dict, optional
        Model configuration.
    trials : int, optional
        Optuna trials per search after the candidates (config ``table.trials``).
    folds : int, optional
        Outer folds (config ``table.folds``).
    nested : bool, optional
        Search inside each outer fold (config ``table.nested``).
    num_threads : int
        LightGBM threads per search.
    progress : bool
        Show a progress bar with the best inner score so far.
    seconds : float, optional
        Time budget of all searches together (config ``table.budget_seconds``).
    positive : str, optional
        The target value that means default.
    directions : dict, optional
        Monotone constraint (+1 raises risk, -1 lowers it) per numeric column.
    workers : int, optional
        Searches run at once (config ``table.workers``; 0 = free cores).
    master_scale : list of dict, optional
        The table's own master scale (``grade, upper, supervision_class`` bands) instead of
        the firm scale of the configuration.

    Returns
    -------
    TrainResult

    Raises
    ------
    TableError
        A column the training cannot use, named in the message.
    """
    cfg = config or load_config()
    if master_scale is not None:
        cfg = {**cfg, "master_scale": master_scale}
    frame, names, y, notes = prepare_table(df, target, cfg, id_col, time_col, positive, directions)
    if time_col is not None:
        frame = frame.rename(columns={time_col: "as_of"}).assign(label=y)
        result = train_time_split(
            frame,
            names,
            None,
            cfg,
            trials if trials is not None else int(cfg["table"]["trials"]),
            num_threads=num_threads,
            progress=progress,
            directions=directions,
        )
    else:
        opts = _Options.from_config(cfg, trials, folds, nested, seconds, workers, num_threads)
        result = _train_cv(frame[names], y, names, cfg, opts, directions, progress)
    result.metrics["table_notes"] = notes
    return result


class _Options:
    """The resolved run options of one table CV."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    @classmethod
    def from_config(
        cls,
        cfg: dict[str, Any],
        trials: int | None,
        folds: int | None,
        nested: bool | None,
        seconds: float | None,
        workers: int | None,
        num_threads: int,
    ) -> _Options:
        t = cfg["table"]
        budget = seconds if seconds is not None else t.get("budget_seconds")
        return cls(
            trials=int(t["trials"] if trials is None else trials),
            folds=int(t["folds"] if folds is None else folds),
            nested=bool(t["nested"] if nested is None else nested),
            seconds=None if budget is None else float(budget),
            workers=int(t["workers"] if workers is None else workers),
            num_threads=num_threads,
            seed=int(t["seed"]),
            bagging_seeds=int(t["bagging_seeds"]),
        )


def free_workers(tasks: int) -> int:
    """Cores the 1-minute load average leaves free (at least one, at most ``tasks``).

    A core counts as busy only when a whole core's worth of load is on it (the load rounded
    down): a benchmark that ran a few seconds ago does not hold a core for a minute.
    """
    cores = os.cpu_count() or 1
    free = cores - int(os.getloadavg()[0])
    return max(1, min(tasks, free))


def _scale_rounds(rounds: int, folds: int) -> int:
    """Scale rounds found by K-fold early stopping to a fit on all K folds' rows."""
    return max(1, round(rounds * folds / (folds - 1)))


def _refit(
    x: np.ndarray, y: np.ndarray, features: list[Any], choice: Choice, cfg: dict[str, Any], o: Any
) -> Any:
    """Refit every member of a choice on these rows (seed-bagged), merged with its weight.

    Only when the choice's own fold-bagged booster has seen rows it must not (a search on all
    rows judged in folds, the not-nested protocol).
    """
    boosters, factors = [], []
    for fit, weight in choice.members:
        rounds = fit.rounds if fit.fixed else _scale_rounds(fit.rounds, len(fit.boosters))
        params = lgb_params(features, fit.params, o.seed, o.num_threads)
        boosters.append(fit_bagged(x, y, features, params, rounds, o.bagging_seeds))
        factors.append(weight)
    return merge_boosters(boosters, factors)


def _fit_choice(
    x: np.ndarray,
    y: np.ndarray,
    features: list[Any],
    choice: Choice,
    cfg: dict[str, Any],
    o: Any,
    refit: bool = False,
) -> tuple[Any, Scorecard | None, dict[str, float], int]:
    """Return a choice's model: fold-bagged booster (or a refit), scorecard, Platt map."""
    booster = _refit(x, y, features, choice, cfg, o) if refit else choice.booster
    card = None
    if choice.weight > 0:
        ch = cfg["challenger"]
        card = Scorecard.fit(x, y, features, ch["C"], ch["max_iter"], choice.weight)
    return booster, card, platt(choice.oof_margin, choice.labels), choice.rounds


def _margin(booster: Any, card: Scorecard | None, x: np.ndarray) -> np.ndarray:
    m = np.asarray(booster.predict(x, raw_score=True))
    return m if card is None else (1 - card.weight) * m + card.weight * card.log_odds(x)


def _outer_fold(
    i: int,
    tr: np.ndarray,
    te: np.ndarray,
    ctx: dict[str, Any],
    choice: Choice | None,
) -> dict[str, Any]:
    """Defaults, tuned (searched here when nested), calibrated and challenger scores of a fold."""
    x, y, features, cfg, o = ctx["x"], ctx["y"], ctx["features"], ctx["cfg"], ctx["o"]
    default = fit_booster(
        x[tr],
        y[tr],
        features,
        lgb_params(features, LGB_DEFAULTS, o.seed, o.num_threads),
        DEFAULT_ROUNDS,
    )
    refit = choice is not None  # a search on all rows: its fold boosters saw this test fold
    if choice is None:
        choice = search_table(
            x[tr], y[tr], features, cfg, o.trials, ctx["per_search"], o.num_threads, ctx["step"],
            baseline=default,
        )  # fmt: skip
    booster, card, cal, rounds = _fit_choice(x[tr], y[tr], features, choice, cfg, o, refit)
    tuned = _margin(booster, card, x[te])
    chall = fit_challenger(ctx["frame"].iloc[tr], y[tr], features, cfg)
    return {
        "fold": i,
        "te": te,
        "defaults": default.predict(x[te], raw_score=True),
        "tuned": tuned,
        "calibrated": cal["intercept"] + cal["slope"] * tuned,
        "challenger": challenger_pd(chall, ctx["frame"].iloc[te], features),
        "choice": choice,
        "rounds": rounds,
    }


def _train_cv(
    frame: pd.DataFrame,
    y: np.ndarray,
    names: list[str],
    cfg: dict[str, Any],
    o: Any,
    directions: dict[str, int] | None,
    progress: bool,
) -> TrainResult:
    from tqdm.auto import tqdm

    frame = frame.reset_index(drop=True)
    features = apply_directions(features_from_catalog(None, names, frame), directions)
    model = _stub(features, cfg, None)
    x = model.matrix(frame)
    outer = list(StratifiedKFold(o.folds, shuffle=True, random_state=o.seed).split(x, y))
    searches = o.folds + 1 if o.nested else 1
    workers = o.workers or free_workers(searches)
    per_search = None if o.seconds is None else o.seconds * min(workers, searches) / searches
    n_cand = len(cfg["table"]["candidates"])
    bar = tqdm(total=searches * (n_cand + o.trials), desc="search", disable=not progress)
    lock, best = threading.Lock(), [float("-inf")]

    def step(score: float) -> None:
        with lock:
            best[0] = max(best[0], score)
            bar.update(1)
            bar.set_postfix_str(f"best inner AUC {best[0]:.4f}")

    ctx = {"x": x, "y": y, "features": features, "cfg": cfg, "o": o, "frame": frame,
           "per_search": per_search, "step": step}  # fmt: skip
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        final_job = pool.submit(
            search_table, x, y, features, cfg, o.trials, per_search, o.num_threads, step
        )
        if o.nested:
            jobs = [pool.submit(_outer_fold, i, tr, te, ctx, None) for i, (tr, te) in
                    enumerate(outer)]  # fmt: skip
            final = final_job.result()
        else:
            final = final_job.result()
            jobs = [pool.submit(_outer_fold, i, tr, te, ctx, final) for i, (tr, te) in
                    enumerate(outer)]  # fmt: skip
        folds_out = [j.result() for j in jobs]
    bar.close()
    cv_seconds = time.perf_counter() - t0
    booster, card, cal, rounds = _fit_choice(x, y, features, final, cfg, o)
    model.booster, model.linear, model.calibration = booster, card, cal
    return _cv_result(model, frame, y, names, cfg, o, folds_out, final, rounds, cv_seconds, outer)


HEADLINE = (
    "tuned.mean_auc — the mean of the per-fold AUCs: the inner searches choose by this same "
    "criterion, so the choice and its judgement agree, and its fold spread (std_auc) shows the "
    "noise; pooled_oof_auc also mixes the folds' score scales, which the uncalibrated margins "
    "do not share, so it reads lower for models whose scale varies by fold."
)


def _summary(fold_auc: list[float], y: np.ndarray, oof: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    return {
        "fold_auc": fold_auc,
        "mean_auc": float(np.mean(fold_auc)),
        "std_auc": float(np.std(fold_auc, ddof=1)),
        "pooled_oof_auc": float(roc_auc_score(y, oof)),
    }


def _choice_json(choice: Choice, rounds: int) -> dict[str, Any]:
    return {
        "chosen": choice.name,
        "inner_mean_auc": choice.score,
        "params": choice.params,
        "rounds": rounds,
        "rounds_inner": choice.rounds,
        "blend_weight": choice.weight,
        "members": [
            {
                "name": f.name,
                "weight": w,
                "rounds": f.rounds,
                "inner_mean_auc": f.score,
                "params": f.params,
            }
            for f, w in choice.members
        ],
    }


def _cv_result(
    model: Any,
    frame: pd.DataFrame,
    y: np.ndarray,
    names: list[str],
    cfg: dict[str, Any],
    o: Any,
    folds_out: list[dict[str, Any]],
    final: Choice,
    rounds: int,
    cv_seconds: float,
    outer: list[tuple[np.ndarray, np.ndarray]],
) -> TrainResult:
    from sklearn.metrics import roc_auc_score

    keys = ("defaults", "tuned", "calibrated", "challenger")
    oof = {k: np.zeros(len(y)) for k in keys}
    fold_auc: dict[str, list[float]] = {k: [] for k in keys}
    for f in folds_out:
        for k in keys:
            oof[k][f["te"]] = f[k]
            fold_auc[k].append(float(roc_auc_score(y[f["te"]], f[k])))
    oof_pd = model.floor(oof["calibrated"])
    bins = int(cfg["report"]["calibration_bins"])
    fp = fingerprint(frame[names].assign(__label=y))
    model.version = _model_version(fp)
    diff = np.array(fold_auc["tuned"]) - np.array(fold_auc["defaults"])
    trials = [f["choice"].trials.assign(outer_fold=str(f["fold"])) for f in folds_out if o.nested]
    trials_df = pd.concat([*trials, final.trials.assign(outer_fold="final")], ignore_index=True)
    protocol = {
        "kind": "nested_stratified_cv" if o.nested else "stratified_cv",
        "folds": o.folds,
        "inner_folds": int(cfg["table"]["inner_folds"]),
        "seed": o.seed,
        "trials": o.trials,
        "budget_seconds": o.seconds,
        "candidates": list(cfg["table"]["candidates"]),
        "bagging_seeds": o.bagging_seeds,
        "ensemble_steps": int(cfg["table"]["ensemble_steps"]),
        "blend_weights": list(cfg["table"]["blend_weights"]),
        "description": _cv_description(o, int(cfg["table"]["inner_folds"])),
        "headline": HEADLINE,
        "cv_seconds": cv_seconds,
    }
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "headline": {"metric": "tuned.mean_auc", "value": float(np.mean(fold_auc["tuned"]))},
        "defaults": _summary(fold_auc["defaults"], y, oof["defaults"]),
        "tuned": _summary(fold_auc["tuned"], y, oof["tuned"]),
        "challenger": _summary(fold_auc["challenger"], y, oof["challenger"]),
        "tuned_beats_defaults": bool(diff.mean() >= 0),
        "tuned_minus_defaults_by_fold": diff.tolist(),
        "calibrated_oof": binary_metrics(y, oof_pd, bins),
        "fold_params": [_choice_json(f["choice"], f["rounds"]) for f in folds_out],
        "params": {**final.params, "rounds": rounds},
        "final": _choice_json(final, rounds),
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
        "params": final.params,
        "rounds": rounds,
        "blend_weight": final.weight,
        "test_metrics": {
            "auc": metrics["tuned"]["mean_auc"],
            "ece": metrics["calibrated_oof"]["ece"],
        },
    }
    eval_frame = frame[names].assign(label=y, pd=oof_pd, challenger_pd=oof["challenger"])
    return TrainResult(
        model=model,
        challenger=None,
        metrics=metrics,
        trials=trials_df,
        eval_frame=eval_frame,
        train_frame=frame[names],
        params={**final.params, "rounds": rounds, "blend_weight": final.weight},
    )


def _cv_description(o: Any, inner: int) -> str:
    search = (
        f"documented candidates (LightGBM's defaults at 100 rounds among them), then up to "
        f"{o.trials} optuna trials (median pruning) within the time budget, each scored by "
        f"{inner}-fold inner CV as the mean per-fold AUC; the model is the fold-bagged "
        f"ensemble the inner CV prefers (each configuration's {inner} inner-fold boosters "
        "averaged in log-odds, configurations combined by greedy ensemble selection on the "
        "inner out-of-fold margins from the anchor of table.ensemble_start), blended with the linear "
        "scorecard at the weight the inner CV prefers"
    )
    return (
        f"Stratified {o.folds}-fold cross-validation (shuffled, seed {o.seed}); AUC is the mean "
        "of the per-fold AUCs (pooled out-of-fold AUC beside it). 'defaults': LightGBM default "
        "parameters (100 rounds). "
        + (
            f"'tuned': nested — in each outer fold a search on the outer training rows only: "
            f"{search}; the outer test fold is never seen by the search. "
            if o.nested
            else f"'tuned': NOT nested — one search on all rows ({search}) is then refit in every "
            f"fold ({o.bagging_seeds} seeds per member, rounds scaled by {inner}/{inner - 1}), "
            "so its CV AUC is optimistically biased. "
        )
        + "'calibrated_oof': each outer fold's tuned log-odds mapped by a Platt map fitted on "
        "that fold's inner out-of-fold margins, so parameters and calibration are both chosen "
        "without the scored rows. 'challenger': logistic regression in the same folds. The "
        "registered model comes from one more search on all rows (its fold-bagged ensemble, "
        "each member booster on (k-1)/k of the rows), with its Platt map from that search's "
        "inner out-of-fold margins."
    )
