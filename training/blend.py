"""The linear scorecard a table model may blend with its booster, and its exact contributions.

The scorecard is the logistic challenger's recipe written on the model's own matrix
(:meth:`training.model.CreditModel.matrix`): numeric columns median-imputed with a missing
indicator, clipped to their 1st–99th training percentiles and standardised; categorical codes
one-hot (a missing or unseen level is its own column). Each feature's contribution is its terms
minus their training mean, so ``base + contributions`` equals the scorecard's log-odds exactly.
A blended model's margin is ``(1 - w) * booster margin + w * scorecard log-odds``; its SHAP
values are ``(1 - w) * TreeSHAP + w * linear contributions`` — still exact and additive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression


class Scorecard:
    """A logistic scorecard on the model matrix with per-feature additive contributions.

    Parameters
    ----------
    terms : list of dict
        One per feature (model order): ``kind`` numeric (``median, lo, hi, mean, scale, coef``
        and ``coef_missing, ind_mean, ind_scale`` for the indicator) or category (``coefs`` per
        code and ``coef_missing``), each with ``offset`` (its mean term on the training rows).
    intercept : float
        Log-odds intercept.
    weight : float
        Blend weight ``w`` of the scorecard in the model's margin.
    """

    def __init__(self, terms: list[dict[str, Any]], intercept: float, weight: float) -> None:
        self.terms, self.intercept, self.weight = terms, float(intercept), float(weight)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        features: list[Any],
        c: float = 1.0,
        max_iter: int = 2000,
        weight: float = 0.0,
    ) -> Scorecard:
        """Fit the scorecard on a model matrix and 0/1 labels."""
        terms: list[dict[str, Any]] = []
        for j, f in enumerate(features):
            col = x[:, j]
            miss = np.isnan(col)
            if f.kind == "category":
                terms.append({"kind": "category", "levels": len(f.categories or [])})
                continue
            median = float(np.nanmedian(col)) if (~miss).any() else 0.0
            filled = np.where(miss, median, col)
            lo, hi = np.percentile(filled, [1, 99])
            clipped = np.clip(filled, lo, hi)
            scale = float(clipped.std()) or 1.0
            ind = miss.astype(float)
            terms.append(
                {
                    "kind": "numeric",
                    "median": median,
                    "lo": float(lo),
                    "hi": float(hi),
                    "mean": float(clipped.mean()),
                    "scale": scale,
                    "has_missing": bool(miss.any()),
                    "ind_mean": float(ind.mean()),
                    "ind_scale": float(ind.std()) or 1.0,
                }
            )
        card = cls(terms, 0.0, weight)
        design, slices = card._design(x)
        lr = LogisticRegression(C=c, max_iter=max_iter)
        lr.fit(design, np.asarray(y, dtype=int))
        coef = lr.coef_[0]
        card.intercept = float(lr.intercept_[0])
        for t, (a, b) in zip(terms, slices, strict=True):
            t["coefs"] = [float(v) for v in coef[a:b]]
        contrib = card._raw_terms(x)
        for t, m in zip(terms, contrib.mean(axis=0), strict=True):
            t["offset"] = float(m)
        return card

    def _design(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        cols: list[np.ndarray] = []
        slices: list[tuple[int, int]] = []
        for j, t in enumerate(self.terms):
            start = sum(c.shape[1] for c in cols)
            cols.append(self._columns(t, x[:, j]))
            slices.append((start, start + cols[-1].shape[1]))
        return np.hstack(cols), slices

    @staticmethod
    def _columns(t: dict[str, Any], col: np.ndarray) -> np.ndarray:
        miss = np.isnan(col)
        if t["kind"] == "category":
            n = int(t["levels"])
            codes = np.where(miss, n, np.nan_to_num(col, nan=n)).astype(int)
            codes = np.clip(codes, 0, n)  # a code past the levels is an unseen level: missing
            out = np.zeros((len(col), n + 1))
            out[np.arange(len(col)), codes] = 1.0
            return out
        filled = np.where(miss, t["median"], col)
        z = (np.clip(filled, t["lo"], t["hi"]) - t["mean"]) / t["scale"]
        if not t["has_missing"]:
            return z[:, None]
        ind = (miss.astype(float) - t["ind_mean"]) / t["ind_scale"]
        return np.column_stack([z, ind])

    def _raw_terms(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], len(self.terms)))
        for j, t in enumerate(self.terms):
            out[:, j] = self._columns(t, x[:, j]) @ np.asarray(t["coefs"])
        return out

    # ------------------------------------------------------------------ scoring
    def contributions(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-feature contributions (terms minus their training mean) and the base value."""
        offsets = np.array([t["offset"] for t in self.terms])
        return self._raw_terms(x) - offsets, self.intercept + float(offsets.sum())

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """Return the scorecard's log-odds of default."""
        return self.intercept + self._raw_terms(x).sum(axis=1)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (saved in ``model.json`` as ``linear``)."""
        return {"weight": self.weight, "intercept": self.intercept, "terms": self.terms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scorecard:
        """Read what :meth:`to_json` wrote."""
        return cls(list(data["terms"]), float(data["intercept"]), float(data["weight"]))
