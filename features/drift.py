"""Population stability index (PSI) of features and scores between two samples.

``PSI = sum_i (c_i - r_i) * ln(c_i / r_i)`` over bins, where ``r_i`` and ``c_i`` are the shares
of the reference and current samples in bin ``i``. Numeric bins are fixed on the reference
sample (its quantiles, open-ended at both sides) so the current sample is judged against the
reference's grid; categories are their own bins; missing values (NaN) form one more bin, so a
change in missingness is drift too and nothing is silently dropped. An empty bin's share is
floored at :data:`EMPTY_BIN_SHARE` so the logarithm stays finite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.catalog import Catalog, load_catalog

#: Where the shipped verdict bands live.
DRIFT_CONFIG_PATH = Path(__file__).parent / "config" / "drift.yaml"


class DriftBands(BaseModel):
    """PSI verdict bands (``features/config/drift.yaml``).

    Below ``moderate`` stable, below ``significant`` moderate, else significant.
    """

    model_config = ConfigDict(extra="forbid")

    moderate: float = Field(gt=0)
    significant: float = Field(gt=0)
    empty_bin_share: float = Field(gt=0, lt=0.01)

    @model_validator(mode="after")
    def _ordered(self) -> DriftBands:
        if self.significant <= self.moderate:
            raise ValueError(
                f"significant ({self.significant}) must exceed moderate ({self.moderate})"
            )
        return self


def load_drift_bands(path: Path | str | None = None) -> DriftBands:
    """Load the PSI verdict bands (``features/config/drift.yaml`` by default).

    Raises
    ------
    ValueError
        The file is missing or invalid (the message names the file and field).
    """
    p = Path(path) if path is not None else DRIFT_CONFIG_PATH
    if not p.is_file():
        raise ValueError(f"drift bands {p} must exist; it does not")
    try:
        return DriftBands.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))
    except Exception as exc:  # YAML or validation errors: one message naming the file
        raise ValueError(f"drift bands {p} are not valid: {exc}") from exc


_BANDS = load_drift_bands()
#: Verdict bands of the shipped configuration.
PSI_MODERATE = _BANDS.moderate
PSI_SIGNIFICANT = _BANDS.significant
#: Share given to an empty bin (in either sample) instead of 0.
EMPTY_BIN_SHARE = _BANDS.empty_bin_share
#: Model-output columns that drift_report also checks when both files have them.
SCORE_COLUMNS = ("pd", "score", "log_odds")


def _is_categorical(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def bin_codes(
    reference: pd.Series, current: pd.Series, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Bin both samples on bins fixed by the reference sample.

    Parameters
    ----------
    reference, current : pandas.Series
        The two samples of one variable.
    bins : int
        Number of reference quantile bins for a numeric variable (fewer when the reference has
        fewer distinct values).

    Returns
    -------
    ref_codes, cur_codes : numpy.ndarray
        Bin index of every row; the last bin holds missing values.
    labels : list of str
        Bin labels.
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins}")
    if _is_categorical(reference) or _is_categorical(current):
        ref = reference.astype("object").where(reference.notna(), None)
        cur = current.astype("object").where(current.notna(), None)
        cats = sorted({str(v) for v in ref.dropna()} | {str(v) for v in cur.dropna()})

        def codes(s: pd.Series) -> np.ndarray:
            text = s.map(lambda v: None if v is None else str(v))
            c = pd.Categorical(text, categories=cats).codes.astype(np.int64)
            return np.where(c < 0, len(cats), c)  # missing values get the last bin

        return codes(ref), codes(cur), [*cats, "missing"]
    ref_v = reference.to_numpy(dtype=np.float64, na_value=np.nan)
    cur_v = current.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = ref_v[~np.isnan(ref_v)]
    if len(finite):
        qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)
    else:
        edges = np.array([], dtype=np.float64)

    def codes_num(v: np.ndarray) -> np.ndarray:
        c = np.searchsorted(edges, v, side="left")  # bins (e_{i-1}, e_i]
        return np.where(np.isnan(v), len(edges) + 1, c)

    bounds = [-np.inf, *edges.tolist(), np.inf]
    labels = [f"({bounds[i]:.6g}, {bounds[i + 1]:.6g}]" for i in range(len(edges) + 1)]
    labels.append("missing")
    return codes_num(ref_v), codes_num(cur_v), labels


def bin_counts(
    reference: pd.Series, current: pd.Series, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Count both samples on bins fixed by the reference sample (see :func:`bin_codes`).

    Returns
    -------
    ref_counts, cur_counts : numpy.ndarray
        Counts per bin; the last bin holds missing values.
    labels : list of str
        Bin labels.
    """
    ref_codes, cur_codes, labels = bin_codes(reference, current, bins)
    k = len(labels)
    return np.bincount(ref_codes, minlength=k), np.bincount(cur_codes, minlength=k), labels


def psi_by_group(
    reference: pd.Series, current: pd.Series, groups: np.ndarray, bins: int = 10
) -> dict[object, float]:
    """PSI of each group of ``current`` (e.g. each period) against one reference sample.

    The reference's bins are computed once, so many periods cost one binning.

    Parameters
    ----------
    reference, current : pandas.Series
        Reference sample and the pooled current samples.
    groups : numpy.ndarray
        Group of every ``current`` row.
    bins : int
        Reference quantile bins for numeric variables.

    Returns
    -------
    dict
        Group value to PSI.
    """
    ref_codes, cur_codes, labels = bin_codes(reference, current, bins)
    k = len(labels)
    ref_counts = np.bincount(ref_codes, minlength=k)
    inverse, keys = pd.factorize(np.asarray(groups), sort=True)
    if (inverse < 0).any():
        raise ValueError("groups must have no missing values")
    table = np.bincount(inverse * k + cur_codes, minlength=len(keys) * k).reshape(len(keys), k)
    return {key: psi_from_counts(ref_counts, table[i]) for i, key in enumerate(keys)}


def psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """PSI of two count vectors over the same bins (empty bins floored at EMPTY_BIN_SHARE).

    Parameters
    ----------
    ref_counts, cur_counts : numpy.ndarray
        Counts per bin.

    Returns
    -------
    float
    """
    n_ref, n_cur = ref_counts.sum(), cur_counts.sum()
    if n_ref == 0 or n_cur == 0:
        raise ValueError(f"both samples must have rows; got reference {n_ref}, current {n_cur}")
    r = np.maximum(ref_counts / n_ref, EMPTY_BIN_SHARE)
    c = np.maximum(cur_counts / n_cur, EMPTY_BIN_SHARE)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(
    reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, bins: int = 10
) -> float:
    """Compute the population stability index (PSI) of one variable.

    Parameters
    ----------
    reference, current : array-like
        Reference (e.g. training) and current (e.g. this month) samples; NaN is a bin.
    bins : int
        Reference quantile bins for numeric variables.

    Returns
    -------
    float
        0 for identical distributions; larger is more drift.
    """
    ref_counts, cur_counts, _ = bin_counts(pd.Series(reference), pd.Series(current), bins)
    return psi_from_counts(ref_counts, cur_counts)


def verdict(value: float, bands: DriftBands | None = None) -> str:
    """Verdict of a PSI value: ``stable``, ``moderate`` or ``significant``.

    Parameters
    ----------
    value : float
        A PSI.
    bands : DriftBands, optional
        Verdict bands (default ``features/config/drift.yaml``: 0.10 and 0.25).

    Returns
    -------
    str
    """
    if value is None or not np.isfinite(value) or value < 0:
        raise ValueError(f"value must be a finite non-negative PSI; got {value!r}")
    b = bands or _BANDS
    if value < b.moderate:
        return "stable"
    if value < b.significant:
        return "moderate"
    return "significant"


def psi_frame(
    ref_df: pd.DataFrame, cur_df: pd.DataFrame, columns: list[str], bins: int = 10
) -> pd.DataFrame:
    """PSI and verdict of several columns.

    Parameters
    ----------
    ref_df, cur_df : pandas.DataFrame
        Reference and current samples.
    columns : list of str
        Columns to compare (each must be in both frames).
    bins : int
        Reference quantile bins for numeric columns.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``psi``, ``verdict``, ``ref_missing``, ``cur_missing`` (missing shares),
        one row per column in the given order.
    """
    missing = [c for c in columns if c not in ref_df or c not in cur_df]
    if missing:
        raise KeyError(f"columns missing from the reference or current sample: {missing}")
    rows = []
    for col in columns:
        value = psi(ref_df[col], cur_df[col], bins)
        rows.append(
            {
                "feature": col,
                "psi": value,
                "verdict": verdict(value),
                "ref_missing": float(ref_df[col].isna().mean()) if len(ref_df) else np.nan,
                "cur_missing": float(cur_df[col].isna().mean()) if len(cur_df) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["feature", "psi", "verdict", "ref_missing", "cur_missing"])


def drift_report(
    reference_path: str | Path, current_path: str | Path, catalog: Catalog | None = None
) -> pd.DataFrame:
    """PSI of every catalog feature (and score column) present in two Parquet samples.

    Parameters
    ----------
    reference_path, current_path : str or Path
        Snapshots or training sets.
    catalog : Catalog, optional
        Features to compare (default: the shipped catalog).

    Returns
    -------
    pandas.DataFrame
        As :func:`psi_frame`, most drifted first.
    """
    catalog = catalog or load_catalog()
    for path in (reference_path, current_path):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"{path}: no such Parquet file (expected a snapshot or dataset)"
            )
    ref, cur = pd.read_parquet(reference_path), pd.read_parquet(current_path)
    wanted = [*catalog.names, *SCORE_COLUMNS]
    columns = [c for c in wanted if c in ref.columns and c in cur.columns]
    if not columns:
        raise ValueError(
            f"{reference_path} and {current_path} share no catalog feature or score column"
        )
    table = psi_frame(ref, cur, columns)
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
