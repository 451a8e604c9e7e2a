"""Diagnostic of the table search's choice: every evaluated configuration on the outer test fold.

For each outer fold of the nested protocol, runs the search exactly as ``kuaxin train --table``
does (same folds, seed, candidates, budget share) and saves, beside the outer test labels, the
inner out-of-fold margins and the outer-test margins of every configuration it evaluated (each
fold-bagged), of the baseline (LightGBM's defaults on all the outer training rows), of the
scorecard, and of the model the search chose. Selection rules can then be compared offline on
the saved arrays without training again. This is for *studying* the search: nothing in the
shipped configuration may be set from the outer-test figures it prints without saying so.
Usage::

    python -m benchmarks.table_selection_diag --only polish --out /tmp/diag
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from benchmarks.bench_table import TABLES


def _fold(name: str, i: int, per_search: float, out: Path) -> str:
    from training.blend import Scorecard
    from training.boosting import DEFAULT_ROUNDS, LGB_DEFAULTS, fit_booster, lgb_params
    from training.model import features_from_catalog
    from training.result import _stub
    from training.scale import load_config
    from training.table_prep import prepare_table, read_table
    from training.table_search import _inner, inner_linear_oof, search_table

    path, target, positive = TABLES[name]
    cfg = load_config()
    frame, names, y, _ = prepare_table(read_table(path), target, cfg, positive=positive)
    frame = frame[names].reset_index(drop=True)
    features = features_from_catalog(None, names, frame)
    x = _stub(features, cfg, None).matrix(frame)
    t = cfg["table"]
    outer = list(
        StratifiedKFold(int(t["folds"]), shuffle=True, random_state=int(t["seed"])).split(x, y)
    )
    tr, te = outer[i]
    base = fit_booster(
        x[tr],
        y[tr],
        features,
        lgb_params(features, LGB_DEFAULTS, int(t["seed"]), 1),
        DEFAULT_ROUNDS,
    )
    t0 = time.perf_counter()
    choice = search_table(
        x[tr], y[tr], features, cfg, int(t["trials"]), per_search, 1, baseline=base,
        keep_fits=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    all_fits = choice.fits
    inner = _inner(x[tr], y[tr], features, cfg, 1)
    ch = cfg["challenger"]
    linear_oof = inner_linear_oof(inner, ch)
    card = Scorecard.fit(x[tr], y[tr], features, ch["C"], ch["max_iter"])
    test = []
    for f in all_fits:  # fold-bagged, also for the defaults (their refit is the baseline)
        test.append(np.mean([b.predict(x[te], num_iteration=f.rounds, raw_score=True)
                             for b in f.boosters], axis=0))  # fmt: skip
    chosen = np.asarray(choice.booster.predict(x[te], raw_score=True))
    if choice.weight > 0:
        chosen = (1 - choice.weight) * chosen + choice.weight * card.log_odds(x[te])
    inner_fold = np.zeros(len(tr), dtype=int)
    for k, (_, iva) in enumerate(inner.folds):
        inner_fold[iva] = k
    np.savez(
        out / f"{name}_fold{i}.npz",
        names=np.array([f.name for f in all_fits]),
        inner_oof=np.array([f.oof for f in all_fits]),
        inner_y=y[tr],
        inner_fold=inner_fold,
        test=np.array(test),
        test_y=y[te],
        baseline_test=base.predict(x[te], raw_score=True),
        linear_oof=linear_oof,
        linear_test=card.log_odds(x[te]),
        chosen_test=chosen,
        chosen_weight=choice.weight,
        chosen_name=choice.name,
        seconds=seconds,
    )
    auc = lambda s: roc_auc_score(y[te], s)  # noqa: E731
    return (
        f"fold {i}: defaults {auc(base.predict(x[te], raw_score=True)):.4f} chosen {auc(chosen):.4f}"
        f" ({choice.name}, w {choice.weight}; {seconds:.0f} s)"
    )


def main() -> None:
    """Run the folds (two processes) and print each fold's defaults and chosen AUC."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(TABLES), default="polish")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-search", type=float, default=400 * 2 / 6)
    ap.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        jobs = [pool.submit(_fold, args.only, i, args.per_search, args.out) for i in args.folds]
        for j in jobs:
            print(j.result(), flush=True)


if __name__ == "__main__":
    main()
