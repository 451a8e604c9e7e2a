"""When a platform record becomes known: source lags and the snapshot configuration.

A record is *visible* in the snapshot at as-of date ``T`` when its availability date is on or
before ``T``:

- monthly tables: last day of ``period`` + ``lag_days``;
- ``tax``: the tax year's publication date (tax grades for year Y are published in April of
  Y+1; month, day and year offset are configuration);
- event tables: the table's date column + ``lag_days``;
- ``firms``: ``registration_date`` + ``lag_days``.

The lags live in ``features/config/availability.yaml`` and the formula parameters in
``features/config/feature_params.yaml``; nothing here reads a file at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.tables import TABLES

CONFIG_DIR = Path(__file__).parent / "config"
AVAILABILITY_PATH = CONFIG_DIR / "availability.yaml"
PARAMS_PATH = CONFIG_DIR / "feature_params.yaml"


class ConfigError(ValueError):
    """A snapshot configuration file is missing a value or holds a bad one."""


class TableLag(BaseModel):
    """When one source's rows become known (``availability.yaml``, one entry per table)."""

    model_config = ConfigDict(extra="forbid")

    lag_days: int | None = Field(default=None, ge=0)
    close_lag_days: int | None = Field(default=None, ge=0)
    claims_lag_days: int | None = Field(default=None, ge=0)
    decision_lag_days: int | None = Field(default=None, ge=0)
    publication_month: int | None = Field(default=None, ge=1, le=12)
    publication_day: int | None = Field(default=None, ge=1, le=31)
    publish_year_offset: int | None = Field(default=None, ge=0)


class FeatureParams(BaseModel):
    """Feature-formula parameters (``feature_params.yaml``); unknown keys are kept."""

    model_config = ConfigDict(extra="allow")

    country_risk: dict[str, int]
    unknown_country_risk: int = Field(ge=0, le=7)
    high_risk_min_category: int = Field(ge=0, le=7)
    tax_grade_points: dict[str, float]
    customs_credit_order: list[str] = Field(min_length=1)
    fx_class_order: list[str] = Field(min_length=1)
    usd_cny: float = Field(gt=0)
    recency_cap_months: float = Field(gt=0)
    loans_to_exports_cap: float = Field(gt=0)
    payout_hold_ratio_cap: float = Field(gt=0)
    stock_cover_cap_days: float = Field(gt=0)
    days_per_month: float = Field(gt=0)
    buyer_late_days: float = Field(ge=0)


def _validated(model: type[BaseModel], data: Any, what: str) -> None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{what}: {where}: {err['msg']}; got {err.get('input')!r}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    return data


@dataclass(frozen=True)
class SnapshotConfig:
    """Source lags and feature-formula parameters.

    Attributes
    ----------
    tables : dict
        Per table: ``lag_days`` (and ``close_lag_days`` for court records, ``claims_lag_days``
        for insurance policies); for ``tax``: ``publication_month``, ``publication_day``,
        ``publish_year_offset``.
    params : dict
        Feature-formula parameters (country risk table, caps, exchange rate...).
    """

    tables: dict[str, dict[str, int]]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = sorted(set(TABLES) - set(self.tables))
        if missing:
            raise ConfigError(f"availability: no entry for tables {missing}")
        for name, entry in self.tables.items():
            if name not in TABLES:
                raise ConfigError(f"availability: unknown table {name!r}")
            if not isinstance(entry, dict):
                raise ConfigError(f"availability: {name} must be a mapping; got {entry!r}")
            _validated(TableLag, entry, f"availability: {name}")
            needed = (
                ("publication_month", "publication_day", "publish_year_offset")
                if name == "tax"
                else ("lag_days",)
            )
            for key in needed:
                value = entry.get(key)
                if not isinstance(value, int) or value < 0:
                    raise ConfigError(
                        f"availability: {name}.{key} must be a non-negative integer; got {value!r}"
                    )
        if self.params:
            _validated(FeatureParams, self.params, "feature_params")
        tax = self.tables["tax"]
        try:
            date(2001, tax["publication_month"], tax["publication_day"])
        except ValueError as exc:
            raise ConfigError(f"availability: tax publication date is not a date: {exc}") from exc

    @classmethod
    def load(
        cls, availability: str | Path | None = None, params: str | Path | None = None
    ) -> SnapshotConfig:
        """Read the two configuration files (the shipped ones by default).

        Parameters
        ----------
        availability : str or Path, optional
            Availability (lag) file.
        params : str or Path, optional
            Feature-parameter file.

        Returns
        -------
        SnapshotConfig
        """
        lags = _read_yaml(Path(availability) if availability else AVAILABILITY_PATH)
        if not isinstance(lags.get("tables"), dict):
            raise ConfigError("availability: must hold a 'tables' mapping")
        return cls(
            tables=lags["tables"], params=_read_yaml(Path(params) if params else PARAMS_PATH)
        )

    def lag(self, table: str, key: str = "lag_days") -> int:
        """Lag in days of ``table`` (``key`` selects close/claims lags)."""
        return int(self.tables[table][key])

    def tax_publication(self, tax_year: int) -> date:
        """Date the tax grade of ``tax_year`` is published."""
        t = self.tables["tax"]
        return date(
            tax_year + t["publish_year_offset"], t["publication_month"], t["publication_day"]
        )

    def last_tax_year(self, as_of: date) -> int:
        """Latest tax year whose grade is published on or before ``as_of``."""
        t = self.tables["tax"]
        year = as_of.year - t["publish_year_offset"]
        return year if as_of >= self.tax_publication(year) else year - 1

    def last_month(self, table: str, as_of: date) -> int:
        """Index (``year * 12 + month - 1``) of the latest month of a monthly table visible at ``as_of``.

        A month is visible when its last day plus the table's lag is on or before ``as_of``.
        """
        cutoff = as_of - timedelta(days=self.lag(table))
        index = month_index_of(cutoff)
        is_month_end = (cutoff + timedelta(days=1)).day == 1
        return index if is_month_end else index - 1


def month_index_of(day: date) -> int:
    """Month index ``year * 12 + month - 1`` of a date."""
    return day.year * 12 + day.month - 1


def month_end(index: int) -> date:
    """Last day of the month with index ``index``."""
    year, month = divmod(index + 1, 12)
    return date(year, month + 1, 1) - timedelta(days=1)


def period_to_month_index(period: pd.Series) -> np.ndarray:
    """Convert ``YYYY-MM`` strings to month indices, parsing each distinct value once.

    Parameters
    ----------
    period : pandas.Series
        Period strings.

    Returns
    -------
    numpy.ndarray of int32
    """
    codes, uniques = pd.factorize(period, sort=False)
    values = np.array(
        [int(p[:4]) * 12 + int(p[5:7]) - 1 for p in np.asarray(uniques, dtype=object)],
        dtype=np.int32,
    )
    if (codes < 0).any():
        raise ValueError("period must not be missing")
    return values[codes] if len(values) else np.zeros(len(period), dtype=np.int32)


def availability_dates(table: str, df: pd.DataFrame, config: SnapshotConfig) -> pd.Series:
    """Date each row of ``table`` becomes known to the platform.

    Parameters
    ----------
    table : str
        Table name (a key of ``features.tables.TABLES``).
    df : pandas.DataFrame
        Rows of that table.
    config : SnapshotConfig
        Lags.

    Returns
    -------
    pandas.Series of datetime64
        One date per row, aligned with ``df``.
    """
    spec = TABLES[table]
    if table == "tax":
        t = config.tables["tax"]
        years = df["tax_year"].astype("int64") + t["publish_year_offset"]
        return pd.to_datetime(
            pd.DataFrame(
                {"year": years, "month": t["publication_month"], "day": t["publication_day"]},
                index=df.index,
            )
        )
    lag = pd.Timedelta(days=config.lag(table))
    if spec.date_column is None:  # a static reference table (buyers): always known
        return pd.Series(pd.Timestamp("1900-01-01"), index=df.index)
    if spec.kind == "monthly":
        start = pd.to_datetime(df["period"], format="%Y-%m")
        return start + pd.offsets.MonthEnd(0) + lag
    assert spec.date_column is not None
    return pd.to_datetime(df[spec.date_column]) + lag
