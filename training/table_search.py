"""The table search: documented candidates, then optuna under a time budget, by inner CV.

One search picks, on the rows it is given only, a weighted ensemble of LightGBM configurations
and the blend weight of the linear scorecard. Every candidate and trial is scored the way the
outer cross-validation judges the final model: the mean of the per-fold AUCs over the same
inner folds (paired, so differences are not fold noise).

- The candidates (``table.candidates`` in ``training/config/model.yaml``) run first, LightGBM's
  defaults at their fixed 100 rounds always, so the choice can never be worse than the
  defaults *by this criterion*; the other candidates and then optuna's TPE trials run while
  the time budget lasts (a fit still running at the deadline stops at its best round so far),
  trials pruned (median rule on the inner-CV AUC curve) when they fall behind.
- One ``lightgbm.Dataset`` is built per search and reused by every candidate and trial, and
  candidates with the same parameters share one run (LightGBM's defaults at 100 rounds and
  early-stopped are one run, read at two rounds); early stopping on the inner folds everywhere.
- The model is *fold-bagged*: each configuration's inner-fold boosters (each on (k-1)/k of the
  rows, rounds chosen by the inner curve) are averaged in log-odds, so no refit is needed and
  the inner out-of-fold margins are those of the model's own members. Configurations are
  combined by greedy ensemble selection with replacement (Caruana et al., 2004) on the inner
  out-of-fold margins: the anchor first (``table.ensemble_start``: ``defaults``, LightGBM's
  defaults fitted on all the searched rows exactly as the baseline is, or ``best``, the best
  single configuration), then whichever addition raises the inner mean AUC most, for at most
  ``table.ensemble_steps`` members. Anchored on the defaults, the model is the baseline plus
  only what the inner CV says improves on it, so its difference to the baseline is less noisy.
- The blend weight is chosen on the inner out-of-fold margins of the ensemble.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.bagging import merge_boosters, truncate
from training.blend import Scorecard
from training.boosting import DEFAULT_ROUNDS, LGB_DEFAULTS, _dataset, fit_booster, lgb_params
from training.model import FeatureInfo
from training.search import suggest_params


@dataclass
class Fit:
    """One configuration evaluated by inner CV.

    Attributes
    ----------
    name : str
        Candidate name or ``trial N``.
    params : dict
        LightGBM parameters (the searched ones, not the fixed objective settings).
    rounds : int
        Rounds of every inner-fold booster (fixed, or the best of the mean inner curve).
    score : float
        Inner-CV mean per-fold AUC at ``rounds``.
    oof : ndarray
        Inner out-of-fold margins at ``rounds``.
    boosters : list of lightgbm.Booster
        The inner-fold boosters (all rounds trained; truncated when merged).
    fixed : bool
        ``rounds`` is the configuration's own (LightGBM's defaults: 100), not early-stopped.
    refit : lightgbm.Booster, optional
        The configuration fitted on all the searched rows, used in the model instead of the
        inner-fold boosters (LightGBM's defaults as the anchor: the baseline model itself).
    """

    name: str
    params: dict[str, Any]
    rounds: int
    score: float
    oof: np.ndarray
    boosters: list[lgb.Booster]
    fixed: bool = False
    refit: lgb.Booster | None = None


@dataclass
class Choice:
    """What one table search chose, with the inner-CV evidence for it.

    Attributes
    ----------
    params : dict
        LightGBM parameters of the heaviest member.
    rounds : int
        Inner rounds of the heaviest member.
    weight : float
        Blend weight of the scorecard (0: booster only).
    score : float
        Inner-CV mean per-fold AUC of the blended choice.
    name : str
        The members and their ensemble weights, e.g. ``defaults_early_stopped×0.6 + trial 3×0.4``.
    oof_margin : ndarray
        Inner out-of-fold margins of the choice (blended), for its Platt map.
    labels : ndarray
        The labels of the searched rows (``oof_margin``'s rows).
    members : list of tuple
        ``(fit, ensemble weight)`` per configuration in the ensemble.
    booster : lightgbm.Booster, optional
        The fold-bagged ensemble as one booster (every member's inner-fold boosters, leaf values
        scaled by weight / folds).
    trials : DataFrame
        One row per candidate and trial.
    fits : list of Fit
        Every configuration evaluated (only with ``keep_fits``: they hold all their boosters).
    """

    params: dict[str, Any]
    rounds: int
    weight: float
    score: float
    name: str
    oof_margin: np.ndarray
    labels: np.ndarray
    members: list[tuple[Fit, float]] = field(default_factory=list)
    booster: lgb.Booster | None = None
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    fits: list[Fit] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        """The heaviest member's rounds are its own (LightGBM's defaults), not early-stopped."""
        return bool(self.members) and self.members[0][0].fixed


class _Pruned(Exception):
    pass


def _mean_auc(env: Any) -> float:
    return float(next(r[2] for r in env.evaluation_result_list if r[1] == "auc"))


def _stopper(
    patience: int | None, min_rounds: int, deadline: float | None, curve: list[float]
) -> Any:
    """Early stopping on the mean inner AUC, never before ``min_rounds``, and at the deadline.

    Records the mean inner AUC of every round in ``curve`` (kept whole: LightGBM truncates its
    own results at the best round, which may come before ``min_rounds``).
    """

    def callback(env: Any) -> None:
        curve.append(_mean_auc(env))
        step = env.iteration + 1
        if step < min_rounds:
            return
        best = int(np.argmax(curve))
        stale = patience is not None and step - 1 - best >= patience
        late = deadline is not None and time.perf_counter() > deadline
        if stale or late:
            raise lgb.callback.EarlyStopException(best, env.evaluation_result_list)

    callback.order = 30  # type: ignore[attr-defined]
    return callback


def _pruning_callback(trial: Any, warmup: int) -> Any:
    """Report the inner-CV AUC every 10 rounds and stop a trial the median rule prunes."""

    def callback(env: Any) -> None:
        step = env.iteration + 1
        if step < warmup or step % 10:
            return
        trial.report(_mean_auc(env), step)
        if trial.should_prune():
            raise _Pruned()

    callback.order = 40  # type: ignore[attr-defined]  # after early stopping's bookkeeping
    return callback


@dataclass
class _Inner:
    x: np.ndarray
    y: np.ndarray
    features: list[FeatureInfo]
    folds: list[tuple[np.ndarray, np.ndarray]]
    data: lgb.Dataset
    seed: int
    num_threads: int
    search: dict[str, Any]
    deadline: float | None = None

    def run(
        self, params: dict[str, Any], min_rounds: int, trial: Any = None
    ) -> tuple[list[float], list[lgb.Booster]]:
        """Inner-CV run of one configuration: mean AUC per round and the inner-fold boosters.

        Early-stopped (never before ``min_rounds``), and stopped at the search's deadline once
        ``min_rounds`` are trained.
        """
        curve: list[float] = []
        callbacks = [
            _stopper(int(self.search["early_stopping_rounds"]), min_rounds, self.deadline, curve)
        ]
        if trial is not None:
            callbacks.append(_pruning_callback(trial, int(self.search["prune_warmup_rounds"])))
        res = lgb.cv(
            {**lgb_params(self.features, params, self.seed, self.num_threads), "metric": "auc"},
            self.data,
            num_boost_round=max(min_rounds, int(self.search["max_rounds"])),
            folds=self.folds,
            callbacks=callbacks,
            return_cvbooster=True,
        )
        cvbooster: Any = res["cvbooster"]
        return curve, list(cvbooster.boosters)

    def fit(
        self,
        name: str,
        params: dict[str, Any],
        rounds: int | None,
        run: tuple[list[float], list[lgb.Booster]],
    ) -> Fit:
        """Read one configuration off a run: at its fixed ``rounds`` or the curve's best."""
        curve, boosters = run
        best = rounds or int(np.argmax(curve)) + 1
        oof = np.zeros(len(self.y))
        for booster, (_, va) in zip(boosters, self.folds, strict=True):
            oof[va] = booster.predict(self.x[va], num_iteration=best, raw_score=True)
        return Fit(name, params, best, float(curve[best - 1]), oof, boosters, rounds is not None)


def fold_mean_auc(y: np.ndarray, score: np.ndarray, folds: list[tuple[Any, Any]]) -> float:
    """Mean of the per-fold AUCs of out-of-fold scores (the outer CV's headline)."""
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[va], score[va]) for _, va in folds]))


def inner_linear_oof(inner: _Inner, card_cfg: dict[str, Any]) -> np.ndarray:
    """Return the linear scorecard's inner out-of-fold log-odds (one fit per inner fold)."""
    linear = np.zeros(len(inner.y))
    for tr, va in inner.folds:
        card = Scorecard.fit(
            inner.x[tr], inner.y[tr], inner.features, card_cfg["C"], card_cfg["max_iter"]
        )
        linear[va] = card.log_odds(inner.x[va])
    return linear


def _choose_weight(
    inner: _Inner, margin: np.ndarray, weights: list[float], card_cfg: dict[str, Any]
) -> tuple[float, float, np.ndarray]:
    """Blend weight with the best inner mean AUC (ties: the smaller weight)."""
    if max(weights) <= 0:
        return 0.0, fold_mean_auc(inner.y, margin, inner.folds), margin
    linear = inner_linear_oof(inner, card_cfg)
    best = (-1.0, 0.0, margin)
    for w in sorted(weights):
        blended = (1 - w) * margin + w * linear
        auc = fold_mean_auc(inner.y, blended, inner.folds)
        if auc > best[0] + 1e-12:
            best = (auc, w, blended)
    return best[1], best[0], best[2]


def select_ensemble(
    fits: list[Fit],
    y: np.ndarray,
    folds: list[tuple[Any, Any]],
    steps: int,
    start: int | None = None,
) -> tuple[list[tuple[Fit, float]], float, np.ndarray]:
    """Greedy ensemble selection with replacement on inner out-of-fold margins.

    Starts from ``fits[start]`` (the anchor) or else the best single fit (the first among
    equals, so LightGBM's defaults win a tie) and adds, while it raises the inner mean per-fold
    AUC, the fit whose addition raises it most, for at most ``steps`` members in all (Caruana
    et al., 2004).

    Parameters
    ----------
    fits : list of Fit
    y : ndarray
        Labels of the searched rows.
    folds : list of (train, valid) index arrays
        The inner folds (``fit.oof`` rows are out-of-fold for them).
    steps : int
        Largest number of members counted with repetition (1: the best single fit).
    start : int, optional
        Index of the fit every ensemble starts from.

    Returns
    -------
    members : list of (Fit, weight)
        Heaviest first; weights sum to one.
    score : float
        Inner mean per-fold AUC of the ensemble.
    margin : ndarray
        The ensemble's inner out-of-fold margins (weighted mean of the members').
    """
    counts = [0] * len(fits)
    total, score = np.zeros(len(y)), float("-inf")
    for k in range(max(1, steps)):
        trial = [fold_mean_auc(y, (total + f.oof) / (k + 1), folds) for f in fits]
        best = int(np.argmax(trial)) if k or start is None else start  # first of the maxima
        if trial[best] <= score + 1e-12:
            break
        counts[best] += 1
        total, score = total + fits[best].oof, trial[best]
    n = sum(counts)
    members = [(fits[i], c / n) for i, c in enumerate(counts) if c]
    members.sort(key=lambda m: -m[1])
    return members, score, total / n


def ensemble_booster(members: list[tuple[Fit, float]]) -> lgb.Booster:
    """Merge the members' inner-fold boosters: one booster, the weighted mean margin."""
    boosters, factors = [], []
    for fit, weight in members:
        if fit.refit is not None:
            boosters.append(fit.refit)
            factors.append(weight)
            continue
        for b in fit.boosters:
            boosters.append(truncate(b, fit.rounds))
            factors.append(weight / len(fit.boosters))
    return merge_boosters(boosters, factors)


def _inner(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    cfg: dict[str, Any],
    num_threads: int,
) -> _Inner:
    tcfg = cfg["table"]
    search = {
        **cfg["search"],
        **tcfg.get("search", {}),
        "prune_warmup_rounds": tcfg["prune_warmup_rounds"],
    }
    seed = int(tcfg["seed"])
    splitter = StratifiedKFold(int(tcfg["inner_folds"]), shuffle=True, random_state=seed)
    folds = list(splitter.split(x, y))
    return _Inner(x, y, features, folds, _dataset(x, y, features), seed, num_threads, search)


def search_table(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    cfg: dict[str, Any],
    trials: int,
    seconds: float | None,
    num_threads: int = 1,
    on_step: Any = None,
    baseline: lgb.Booster | None = None,
    keep_fits: bool = False,
) -> Choice:
    """Choose an ensemble of configurations and the blend weight for these rows by inner CV.

    Parameters
    ----------
    x, y : ndarray
        Model matrix and 0/1 labels of the rows the search may see.
    features : list of FeatureInfo
    cfg : dict
        Model configuration (``table`` section, ``search`` overridden by ``table.search``).
    trials : int
        Optuna trials after the candidates (upper bound).
    seconds : float, optional
        Time budget of this search: LightGBM's defaults always run their 100 rounds; the other
        candidates, then the optuna trials, while time is left; a fit running at the deadline
        stops at its best round so far.
    num_threads : int
        LightGBM threads.
    on_step : callable, optional
        Called as ``on_step(best_score)`` after each candidate or trial (progress bars).
    baseline : lightgbm.Booster, optional
        LightGBM's defaults already fitted on these rows at ``DEFAULT_ROUNDS`` with the table
        seed (the outer fold's baseline): the anchor is this booster instead of a second,
        identical fit.
    keep_fits : bool
        Keep every evaluated configuration on the choice (diagnostics; costs their memory).

    Returns
    -------
    Choice
    """
    tcfg = cfg["table"]
    inner = _inner(x, y, features, cfg, num_threads)
    start = time.perf_counter()
    inner.deadline = None if seconds is None else start + seconds
    rows: list[dict[str, Any]] = []
    fits: list[Fit] = []

    def record(name: str, params: dict[str, Any], score: float, rounds: int, t0: float) -> None:
        rows.append(
            {"name": name, "value": score, "rounds": rounds, "seconds": time.perf_counter() - t0}
            | {f"params_{k}": v for k, v in params.items()}
        )
        if on_step is not None:
            on_step(max(f.score for f in fits) if fits else score)

    _run_candidates(inner, tcfg["candidates"], fits, rows, record)
    if trials > 0 and (inner.deadline is None or time.perf_counter() < inner.deadline):
        remaining = None if inner.deadline is None else inner.deadline - time.perf_counter()
        _run_trials(inner, inner.search, inner.seed, trials, remaining, fits, record)

    anchor = None
    if tcfg["ensemble_start"] == "defaults":
        anchor = next(i for i, f in enumerate(fits) if f.name == "defaults")
        base = fits[anchor]
        params = lgb_params(features, base.params, inner.seed, num_threads)
        same = baseline is not None and base.params == LGB_DEFAULTS
        same = same and base.rounds == DEFAULT_ROUNDS
        base.refit = baseline if same else fit_booster(x, y, features, params, base.rounds)
    members, _, margin = select_ensemble(fits, y, inner.folds, int(tcfg["ensemble_steps"]), anchor)
    weight, blended_score, blended = _choose_weight(
        inner, margin, list(tcfg["blend_weights"]), cfg["challenger"]
    )
    table = pd.DataFrame(rows)
    weights = {f.name: w for f, w in members}
    table["ensemble_weight"] = table["name"].map(weights).fillna(0.0)
    table["chosen"] = table["ensemble_weight"] > 0
    name = " + ".join(f"{f.name}×{w:.2g}" for f, w in members)
    top = members[0][0]
    return Choice(
        top.params, top.rounds, weight, blended_score, name, blended, y,
        members, ensemble_booster(members), table, fits if keep_fits else [],
    )  # fmt: skip


def _run_candidates(
    inner: _Inner,
    candidates: dict[str, Any],
    fits: list[Fit],
    rows: list[dict[str, Any]],
    record: Any,
) -> None:
    """Evaluate the candidates in order while time is left (LightGBM's defaults always).

    Candidates with the same parameters share one run, at least as long as the longest fixed
    rounds among them, read at each one's rounds.
    """
    runs: dict[str, tuple[list[float], list[lgb.Booster]]] = {}
    for k, (name, cand) in enumerate(candidates.items()):
        t0 = time.perf_counter()
        params = {**LGB_DEFAULTS, **cand["params"]}
        key = repr(sorted(params.items()))
        spent = inner.deadline is not None and t0 >= inner.deadline
        if k > 0 and spent and key not in runs:  # a shared run costs nothing more
            rows.append({"name": name, "value": float("nan"), "rounds": 0, "seconds": 0.0,
                         "skipped": "time budget spent"})  # fmt: skip
            continue
        if key not in runs:
            same = [c.get("rounds") or 1 for c in candidates.values()
                    if {**LGB_DEFAULTS, **c["params"]} == params]  # fmt: skip
            runs[key] = inner.run(params, max(same))
        fit = inner.fit(name, params, cand.get("rounds"), runs[key])
        fits.append(fit)
        record(name, params, fit.score, fit.rounds, t0)


def _run_trials(
    inner: _Inner,
    search: dict[str, Any],
    seed: int,
    trials: int,
    remaining: float | None,
    fits: list[Fit],
    record: Any,
) -> None:
    """Optuna TPE trials with median pruning until ``trials`` or ``remaining`` seconds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(search.get("startup_trials", 10))
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )

    def objective(trial: Any) -> float:
        t0 = time.perf_counter()
        params = {**LGB_DEFAULTS, **suggest_params(trial, search)}
        try:
            run = inner.run(params, 1, trial)
        except _Pruned as exc:
            record(f"trial {trial.number} (pruned)", params, float("nan"), 0, t0)
            raise optuna.TrialPruned() from exc
        fit = inner.fit(f"trial {trial.number}", params, None, run)
        fits.append(fit)
        record(fit.name, params, fit.score, fit.rounds, t0)
        return fit.score

    study.optimize(objective, n_trials=trials, timeout=remaining)
