"""Time-ordered splitting of labelled rows into train, validation and out-of-time test."""

from __future__ import annotations

import numpy as np
import pandas as pd


def time_split(
    times: pd.Series, test_share: float, validation_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows by their as-of date into train, validation and test masks.

    Parameters
    ----------
    times : Series
        As-of date of each row.
    test_share, validation_share : float
        Shares of the distinct as-of dates (latest first) in the test and validation windows.

    Returns
    -------
    tuple of ndarray of bool
        ``(train, valid, test)`` masks; every train date precedes every valid date, which
        precedes every test date.
    """
    dates = np.sort(pd.Series(times).dropna().unique())
    if len(dates) < 3:
        raise ValueError(f"time column must have at least 3 distinct dates; got {len(dates)}")
    n_test = max(1, round(len(dates) * test_share))
    n_valid = max(1, round(len(dates) * validation_share))
    if n_test + n_valid >= len(dates):
        n_test, n_valid = 1, 1
    test_start = dates[len(dates) - n_test]
    valid_start = dates[len(dates) - n_test - n_valid]
    t = pd.Series(times).to_numpy()
    test = t >= test_start
    valid = (t >= valid_start) & ~test
    train = t < valid_start
    return train, valid, test
