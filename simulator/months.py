"""Calendar helpers of the simulator: absolute month numbers (year * 12 + month - 1)."""

from __future__ import annotations

import numpy as np

_EPOCH_MONTH = 1970 * 12


def month_start(abs_month: np.ndarray) -> np.ndarray:
    """First day (datetime64[D]) of absolute month numbers (year * 12 + month - 1)."""
    return (np.asarray(abs_month) - _EPOCH_MONTH).astype("datetime64[M]").astype("datetime64[D]")


def month_end(abs_month: np.ndarray) -> np.ndarray:
    """Last day (datetime64[D]) of absolute month numbers."""
    return month_start(np.asarray(abs_month) + 1) - np.timedelta64(1, "D")


def period_strings(month0: int, n: int) -> np.ndarray:
    """``YYYY-MM`` labels of ``n`` months from absolute month ``month0``."""
    m = month0 + np.arange(n)
    return np.array([f"{x // 12:04d}-{x % 12 + 1:02d}" for x in m], dtype=object)


__all__ = ["month_end", "month_start", "period_strings"]
