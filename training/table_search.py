"""The table search: documented candidates first, then optuna under a time budget, by inner CV.

One search picks, on the rows it is given only, the LightGBM parameters, the number of rounds
and the blend weight of the linear scorecard. Every candidate and trial is scored the way the
outer cross-validation judges the final model: the mean of the per-fold AUCs over the same
inner folds (paired, so differences are not fold noise), at one number of rounds for all folds.

- The candidates (``table.candidates`` in ``training/config/model.yaml``) run first, LightGBM's
  defaults at their fixed 100 rounds always, so the choice can never be worse than the
  defaults *by this criterion*; the other candidates and then optuna's TPE trials run while
  the time budget lasts, trials pruned (median rule on the inner-CV AUC curve) when they fall
  behind.
- One ``lightgbm.Dataset`` is built per search and reused by every candidate and trial (the
  binning is the costly part on small tables); early stopping on the inner folds everywhere.
- The blend weight is chosen on the inner out-of-fold margins of the winning configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.blend import Scorecard
from training.boosting import LGB_DEFAULTS, _dataset, lgb_params
from training.model import FeatureInfo
from training.search import suggest_params


@dataclass
class Choice:
    """What one table search chose, with the inner-CV evidence for it.

    Attributes
    ----------
    params : dict
        LightGBM parameters (the searched ones, not the fixed objective settings).
    rounds : int
        Best number of rounds on the inner folds (before scaling to all rows).
    weight : float
        Blend weight of the scorecard (0: booster only).
    score : float
        Inner-CV mean per-fold AUC of the blended choice.
    name : str
        Candidate name or ``trial N``.
    oof_margin : ndarray
        Inner out-of-fold margins of the choice (blended), for its Platt map.
    labels : ndarray
        The labels of the searched rows (``oof_margin``'s rows).
    fixed : bool
        The rounds are the configuration's own (LightGBM's defaults: 100), not early-stopped,
        so a refit on more rows keeps them.
    trials : DataFrame
        One row per candidate and trial.
    """

    params: dict[str, Any]
    rounds: int
    weight: float
    score: float
    name: str
    oof_margin: np.ndarray
    labels: np.ndarray
    fixed: bool = False
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)


class _Pruned(Exception):
    pass


def _pruning_callback(trial: Any, warmup: int) -> Any:
    """Report the inner-CV AUC every 10 rounds and stop a trial the median rule prunes."""

    def callback(env: Any) -> None:
        step = env.iteration + 1
        if step < warmup or step % 10:
            return
        auc = next(r[2] for r in env.evaluation_result_list if r[1] == "auc")
        trial.report(float(auc), step)
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

    def evaluate(
        self, params: dict[str, Any], fixed_rounds: int | None, trial: Any = None
    ) -> tuple[float, int, np.ndarray]:
        """Inner-CV ``(mean per-fold AUC, rounds, out-of-fold margins)`` of one configuration."""
        callbacks: list[Any] = []
        if fixed_rounds is None:
            callbacks.append(
                lgb.early_stopping(int(self.search["early_stopping_rounds"]), verbose=False)
            )
        if trial is not None:
            callbacks.append(_pruning_callback(trial, int(self.search["prune_warmup_rounds"])))
        res = lgb.cv(
            {**lgb_params(self.features, params, self.seed, self.num_threads), "metric": "auc"},
            self.data,
            num_boost_round=fixed_rounds or int(self.search["max_rounds"]),
            folds=self.folds,
            callbacks=callbacks,
            return_cvbooster=True,
        )
        curve = np.asarray(res["valid auc-mean"])
        rounds = fixed_rounds or int(np.argmax(curve)) + 1
        oof = np.zeros(len(self.y))
        cvbooster: Any = res["cvbooster"]
        for booster, (_, va) in zip(cvbooster.boosters, self.folds, strict=True):
            oof[va] = booster.predict(self.x[va], num_iteration=rounds, raw_score=True)
        return float(curve[rounds - 1]), rounds, oof


def fold_mean_auc(y: np.ndarray, score: np.ndarray, folds: list[tuple[Any, Any]]) -> float:
    """Mean of the per-fold AUCs of out-of-fold scores (the outer CV's headline)."""
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[va], score[va]) for _, va in folds]))


def _choose_weight(
    inner: _Inner, margin: np.ndarray, weights: list[float], card_cfg: dict[str, Any]
) -> tuple[float, float, np.ndarray]:
    """Blend weight with the best inner mean AUC (ties: the smaller weight)."""
    if max(weights) <= 0:
        return 0.0, fold_mean_auc(inner.y, margin, inner.folds), margin
    linear = np.zeros(len(inner.y))
    for tr, va in inner.folds:
        card = Scorecard.fit(
            inner.x[tr], inner.y[tr], inner.features, card_cfg["C"], card_cfg["max_iter"]
        )
        linear[va] = card.log_odds(inner.x[va])
    best = (-1.0, 0.0, margin)
    for w in sorted(weights):
        blended = (1 - w) * margin + w * linear
        auc = fold_mean_auc(inner.y, blended, inner.folds)
        if auc > best[0] + 1e-12:
            best = (auc, w, blended)
    return best[1], best[0], best[2]


def search_table(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    cfg: dict[str, Any],
    trials: int,
    seconds: float | None,
    num_threads: int = 1,
    on_step: Any = None,
) -> Choice:
    """Choose parameters, rounds and blend weight for these rows by inner CV.

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
        Time budget of this search: LightGBM's defaults always run; the other candidates,
        then the optuna trials, while time is left (a started fit finishes).
    num_threads : int
        LightGBM threads.
    on_step : callable, optional
        Called as ``on_step(best_score)`` after each candidate or trial (progress bars).

    Returns
    -------
    Choice
    """
    tcfg = cfg["table"]
    search = {
        **cfg["search"],
        **tcfg.get("search", {}),
        "prune_warmup_rounds": tcfg["prune_warmup_rounds"],
    }
    seed = int(tcfg["seed"])
    splitter = StratifiedKFold(int(tcfg["inner_folds"]), shuffle=True, random_state=seed)
    inner = _Inner(
        x,
        y,
        features,
        list(splitter.split(x, y)),
        _dataset(x, y, features),
        seed,
        num_threads,
        search,
    )
    rows: list[dict[str, Any]] = []
    scored: list[tuple[float, str, dict[str, Any], int, np.ndarray]] = []

    def record(name: str, params: dict[str, Any], score: float, rounds: int, t0: float) -> None:
        rows.append(
            {"name": name, "value": score, "rounds": rounds, "seconds": time.perf_counter() - t0}
            | {f"params_{k}": v for k, v in params.items()}
        )
        if on_step is not None:
            on_step(max(s[0] for s in scored) if scored else score)

    start = time.perf_counter()

    def left() -> float | None:
        return None if seconds is None else seconds - (time.perf_counter() - start)

    for k, (name, cand) in enumerate(tcfg["candidates"].items()):
        remaining = left()
        if k > 0 and remaining is not None and remaining <= 0:
            rows.append({"name": name, "value": float("nan"), "rounds": 0, "seconds": 0.0,
                         "skipped": "time budget spent"})  # fmt: skip
            continue
        t0 = time.perf_counter()
        params = {**LGB_DEFAULTS, **cand["params"]}
        score, rounds, oof = inner.evaluate(params, cand.get("rounds"))
        scored.append((score, name, params, rounds, oof))
        record(name, params, score, rounds, t0)

    remaining = left()
    if trials > 0 and (remaining is None or remaining > 0):
        _run_trials(inner, search, seed, trials, remaining, scored, record)

    score, name, params, rounds, oof = max(scored, key=lambda s: s[0])
    weight, blended_score, blended = _choose_weight(
        inner, oof, list(tcfg["blend_weights"]), cfg["challenger"]
    )
    table = pd.DataFrame(rows)
    table["chosen"] = table["name"] == name
    fixed = tcfg["candidates"].get(name, {}).get("rounds") is not None
    return Choice(params, rounds, weight, blended_score, name, blended, y, fixed, table)


def _run_trials(
    inner: _Inner,
    search: dict[str, Any],
    seed: int,
    trials: int,
    remaining: float | None,
    scored: list[Any],
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
            score, rounds, oof = inner.evaluate(params, None, trial)
        except _Pruned as exc:
            record(f"trial {trial.number} (pruned)", params, float("nan"), 0, t0)
            raise optuna.TrialPruned() from exc
        scored.append((score, f"trial {trial.number}", params, rounds, oof))
        record(f"trial {trial.number}", params, score, rounds, t0)
        return score

    study.optimize(objective, n_trials=trials, timeout=remaining)
