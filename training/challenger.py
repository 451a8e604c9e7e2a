"""The logistic-regression challenger fitted on the same features as the booster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.model import FeatureInfo


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
