"""JSON-friendly values: the one place that says what "missing" is and how a value is shown."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    """Whether a feature value is missing (``None``, NaN, ``pd.NA``, ``NaT``)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


def plain(value: Any) -> Any:
    """Return a JSON-friendly Python value (None for missing, numpy scalars unwrapped, dates ISO)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value
