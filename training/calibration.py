"""Platt calibration: an affine map of the booster margin, so SHAP stays additive."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


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
