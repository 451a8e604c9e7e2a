"""Discrimination and calibration metrics of PD predictions.

Thin wrappers over scikit-learn plus the two the field uses that it lacks: the
Kolmogorov-Smirnov statistic and the expected calibration error over PD quantile bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the score distributions of defaults and non-defaults."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed vs predicted default rate per PD quantile bin.

    Parameters
    ----------
    y : ndarray
        0/1 outcomes.
    p : ndarray
        Predicted PDs.
    bins : int
        Number of equal-count bins (PDs are skewed, so equal-width bins would leave most rows
        in the first bin).

    Returns
    -------
    DataFrame
        ``bin, n, mean_pd, default_rate``.
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = pd.qcut(ranks, q=min(bins, len(frame)), labels=False)
    table = frame.groupby("bin").agg(
        n=("y", "size"), mean_pd=("p", "mean"), default_rate=("y", "mean")
    )
    return table.reset_index()


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean absolute gap between predicted and observed rate over quantile bins."""
    table = calibration_table(y, p, bins)
    weights = table["n"] / table["n"].sum()
    return float((weights * (table["mean_pd"] - table["default_rate"]).abs()).sum())


def binary_metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """AUC, Gini, KS, Brier, log loss, ECE, default rate and mean PD.

    Parameters
    ----------
    y : ndarray
        0/1 outcomes (both classes must be present).
    p : ndarray
        Predicted PDs in (0, 1).
    bins : int
        Bins of the expected calibration error.

    Returns
    -------
    dict
    """
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    if len(np.unique(y)) < 2:
        raise ValueError("y must contain both classes to compute AUC; got one")
    auc = float(roc_auc_score(y, p))
    return {
        "n": len(y),
        "defaults": int(y.sum()),
        "default_rate": float(y.mean()),
        "mean_pd": float(p.mean()),
        "auc": auc,
        "gini": 2 * auc - 1,
        "ks": ks_statistic(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p, bins),
    }


def safe_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """AUC, or ``None`` when only one class is present."""
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, p))
