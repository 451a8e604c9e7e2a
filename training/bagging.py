"""Bagging: several boosters averaged in log-odds, as ONE booster.

The members are boosters with different seeds (:func:`fit_bagged`) or the inner-fold boosters
of the table search (fold bagging, :mod:`training.table_search`). A weighted mean of the raw
margins of boosters equals summing all their trees with every leaf value multiplied by its
member's weight. :func:`merge_boosters` writes exactly that model (LightGBM text format),
so the registered model stays one ``booster.txt``: scoring, TreeSHAP and the service need no
change, and because TreeSHAP is linear in the leaf values, the SHAP values of the merged booster
are the average of the members' SHAP values — still exact and additive.
"""

from __future__ import annotations

import re
from typing import Any

import lightgbm as lgb
import numpy as np

from training.boosting import fit_booster
from training.model import FeatureInfo

_SCALED = ("leaf_value=", "internal_value=")


def _split_model(text: str) -> tuple[str, list[str], str]:
    """Header, tree blocks and trailer of a LightGBM text model."""
    head, rest = text.split("\nTree=", 1)
    trees_part, trailer = rest.split("\nend of trees", 1)
    blocks = ["Tree=" + b for b in trees_part.split("\nTree=")]
    return head, blocks, "end of trees" + trailer


def _scale_block(block: str, factor: float, number: int) -> str:
    lines = block.strip("\n").split("\n")
    out = [f"Tree={number}"]
    for line in lines[1:]:
        key = next((k for k in _SCALED if line.startswith(k)), None)
        if key is not None:
            values = [float(v) * factor for v in line[len(key) :].split()]
            line = key + " ".join(repr(v) for v in values)
        out.append(line)
    return "\n".join(out) + "\n"


def truncate(booster: lgb.Booster, rounds: int) -> lgb.Booster:
    """Return the booster's first ``rounds`` trees as a booster of its own."""
    if booster.num_trees() <= rounds:
        return booster
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))


def merge_boosters(boosters: list[lgb.Booster], factors: list[float] | None = None) -> lgb.Booster:
    """One booster whose raw margin is the (weighted) mean of the members' raw margins.

    Parameters
    ----------
    boosters : list of lightgbm.Booster
        Binary boosters on the same features (e.g. one parameter set, different seeds).
    factors : list of float, optional
        Weight of each member's margin (default ``1 / len(boosters)`` each).

    Returns
    -------
    lightgbm.Booster
        Holding every member's trees with leaf values multiplied by the member's factor.
    """
    if factors is None:
        factors = [1.0 / len(boosters)] * len(boosters)
    if len(factors) != len(boosters):
        raise ValueError(f"merge_boosters needs one factor per booster; got {len(factors)}")
    if len(boosters) == 1 and factors[0] == 1.0:
        return boosters[0]
    head, _, trailer = _split_model(boosters[0].model_to_string())
    # tree_sizes lets LightGBM parse trees in parallel; it no longer matches, so drop it
    head = re.sub(r"\ntree_sizes=[^\n]*", "", head)
    trees: list[str] = []
    for b, factor in zip(boosters, factors, strict=True):
        for block in _split_model(b.model_to_string())[1]:
            trees.append(_scale_block(block, factor, len(trees)))
    text = head + "\n\n" + "\n".join(trees) + "\n" + trailer
    return lgb.Booster(model_str=text)


def fit_bagged(
    x: np.ndarray,
    y: np.ndarray,
    features: list[FeatureInfo],
    params: dict[str, Any],
    rounds: int,
    seeds: int,
) -> lgb.Booster:
    """Fit ``seeds`` boosters (seed, seed+1, …) and merge them (one fit when nothing is random).

    Seeds only matter when rows or features are subsampled (``bagging_fraction`` or
    ``feature_fraction`` below 1, or ``extra_trees``); otherwise every member would be the same.
    """
    random = (
        params.get("bagging_fraction", 1.0) < 1.0
        or params.get("feature_fraction", 1.0) < 1.0
        or bool(params.get("extra_trees", False))
    )
    n = max(1, int(seeds)) if random else 1
    base = int(params.get("seed", 0))
    members = [fit_booster(x, y, features, {**params, "seed": base + i}, rounds) for i in range(n)]
    return merge_boosters(members)
