"""Pydantic models of ``simulator/config/simulator.yaml``, checked when the file is loaded.

The sections of the world (macro factor, buyers, delinquency, defaults without warning,
missing-not-at-random reporting, claims) are modelled field by field; the older sections are
required to be present mappings and their probability lists are range-checked. The simulator
keeps reading the plain dict, so the model only guards it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.tables import BUYER_SECTORS, BUYER_SIZES, INDUSTRIES, TABLES

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
Prob = float


class SimulationError(ValueError):
    """Bad arguments to :func:`simulator.simulate.simulate` or a bad configuration."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Episode(_Strict):
    """A scripted macro episode."""

    name: str = Field(min_length=1)
    start: str
    end: str
    level: float
    build: float = Field(default=0.85, ge=0, lt=1)
    regions: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _months(self) -> Episode:
        for v in (self.start, self.end):
            if not _MONTH.match(v):
                raise ValueError(f"episode {self.name}: month must be YYYY-MM; got {v!r}")
        if self.end < self.start:
            raise ValueError(f"episode {self.name}: end {self.end} before start {self.start}")
        return self


class Indicator(_Strict):
    """How one published macro indicator is made from the factor."""

    base: float
    factor: float
    noise_sd: float = Field(ge=0)
    transform: Literal["linear", "log"]
    region: str | None = None
    episodes: dict[str, float] = Field(default_factory=dict)


class MacroConfig(_Strict):
    """The systematic factor (``simulator.macro``)."""

    rho: float = Field(gt=-1, lt=1)
    sigma: float = Field(ge=0)
    burn_in_months: int = Field(ge=0)
    hazard_loading: float
    downgrade_loading: float
    export_loading: float
    other_region: str
    region_loading: dict[str, float] = Field(min_length=1)
    region_countries: dict[str, list[str]]
    industry_loading: dict[str, float]
    episodes: list[Episode]
    indicators: dict[str, Indicator]

    @model_validator(mode="after")
    def _consistent(self) -> MacroConfig:
        regions = set(self.region_loading)
        if self.other_region not in regions:
            raise ValueError(f"other_region {self.other_region!r} has no region_loading")
        unknown = (set(self.region_countries) - regions) | {
            r for e in self.episodes for r in e.regions if r not in regions
        }
        if unknown:
            raise ValueError(f"regions without a region_loading: {sorted(unknown)}")
        if set(self.industry_loading) != set(INDUSTRIES):
            raise ValueError(f"industry_loading must name exactly {list(INDUSTRIES)}")
        columns = set(TABLES["macro_indicators"].column_names) - {"period"}
        if set(self.indicators) != columns:
            raise ValueError(f"indicators must be exactly {sorted(columns)}")
        names = {e.name for e in self.episodes}
        for ind in self.indicators.values():
            if ind.region is not None and ind.region not in regions:
                raise ValueError(f"indicator region {ind.region!r} unknown")
            if set(ind.episodes) - names:
                raise ValueError(f"indicator episodes {sorted(set(ind.episodes) - names)} unknown")
        return self


class Payment(_Strict):
    """A buyer's monthly payment process."""

    late_logit: float
    cure_prob: Prob = Field(ge=0, le=1)
    protracted_logit: float
    insolvency_logit: float
    crc_effect: float
    size_effect: dict[str, float]
    macro_loading: float
    on_time_days: tuple[float, float]
    late_days: tuple[float, float]
    late_paid_share: tuple[Prob, Prob]

    @model_validator(mode="after")
    def _sizes(self) -> Payment:
        if set(self.size_effect) != set(BUYER_SIZES):
            raise ValueError(f"size_effect must name exactly {list(BUYER_SIZES)}")
        return self


class BuyerNames(_Strict):
    """Word lists for buyer names."""

    first: list[str] = Field(min_length=1)
    second: list[str] = Field(min_length=1)
    default_suffix: str
    suffix: dict[str, str]


class BuyersConfig(_Strict):
    """The overseas buyer pool (``simulator.buyers``)."""

    per_firm: float = Field(gt=0)
    min_per_country: int = Field(ge=1)
    modes: list[str] = Field(min_length=1)
    size_weights: dict[str, float]
    size_pick_weight: dict[str, float]
    sector_weights: dict[str, float]
    terms_months: list[int] = Field(min_length=1)
    terms_weights: list[float] = Field(min_length=1)
    stop_shipping_months: int = Field(ge=0)
    firm_hazard_effect: float
    effect_half_life_months: float = Field(gt=0)
    payment: Payment
    names: BuyerNames

    @model_validator(mode="after")
    def _keys(self) -> BuyersConfig:
        for name, keys, want in [
            ("size_weights", self.size_weights, BUYER_SIZES),
            ("size_pick_weight", self.size_pick_weight, BUYER_SIZES),
            ("sector_weights", self.sector_weights, BUYER_SECTORS),
        ]:
            if set(keys) != set(want):
                raise ValueError(f"{name} must name exactly {list(want)}")
        if len(self.terms_months) != len(self.terms_weights):
            raise ValueError("terms_months and terms_weights must have the same length")
        return self


class Delinquency(_Strict):
    """Roll rates and cures after a missed payment."""

    roll_30_60: Prob = Field(ge=0, le=1)
    roll_60_90: Prob = Field(ge=0, le=1)
    cure_state: int = Field(ge=0)
    restructure_share: Prob = Field(ge=0, le=1)


class Sudden(_Strict):
    """Defaults without warning."""

    max_state: int = Field(ge=0)
    share_of_defaults: Prob = Field(ge=0, lt=1)
    reference_monthly_default_rate: Prob = Field(ge=0, le=1)
    causes: dict[str, float] = Field(min_length=1)


class Mnar(_Strict):
    """Distressed firms that stop reporting a source."""

    stop_prob: dict[str, Prob]
    stop_after_months: tuple[int, int]

    @model_validator(mode="after")
    def _sources(self) -> Mnar:
        bad = [s for s in self.stop_prob if s not in TABLES or not 0 <= self.stop_prob[s] <= 1]
        if bad:
            raise ValueError(f"stop_prob: unknown table or probability outside [0, 1]: {bad}")
        return self


class Claims(_Strict):
    """Export credit insurance claims."""

    notify_after_months: dict[Literal["protracted", "insolvency"], int]
    decision_after_months: tuple[int, int]
    decline_prob: Prob = Field(ge=0, le=1)
    indemnity: Prob = Field(ge=0, le=1)


class Faults(BaseModel):
    """Injected data-quality faults."""

    model_config = ConfigDict(extra="allow")
    mix: dict[str, float] = Field(min_length=1)
    duplicate_only_tables: list[str]
    late_arrival_days: tuple[int, int]
    out_of_range: dict[str, dict[str, Any]]
    bad_periods: list[str]


class SimulatorConfig(BaseModel):
    """The whole file: new sections typed, older ones required mappings."""

    model_config = ConfigDict(extra="forbid")

    country_risk_file: str
    high_risk_crc: int
    firms: dict[str, Any]
    modes: dict[str, Any]
    stores: dict[str, Any]
    wave: dict[str, Any]
    destinations: dict[str, Any]
    seasonality: dict[str, list[float]]
    health: dict[str, Any]
    delinquency: Delinquency
    sudden: Sudden
    macro: MacroConfig
    buyers: BuyersConfig
    mnar: Mnar
    claims: Claims
    hazard: dict[str, Any]
    margins: dict[str, float]
    fx: dict[str, float | list[float]]
    operations: dict[str, Any]
    warehouses: dict[str, Any]
    loans: dict[str, Any]
    defaults: dict[str, Any]
    tax: dict[str, Any]
    customs_credit: dict[str, Any]
    penalties: dict[str, Any]
    insurance: dict[str, Any]
    faults: Faults

    @model_validator(mode="after")
    def _cross(self) -> SimulatorConfig:
        n = int(self.health.get("n_states", 0))
        if len(self.health.get("hazard_logit", [])) != n:
            raise ValueError("health.hazard_logit must have n_states entries")
        if not 0 <= self.delinquency.cure_state < n:
            raise ValueError(f"delinquency.cure_state must be a state 0..{n - 1}")
        for section, values in [("stores", self.stores), ("operations", self.operations)]:
            for key, v in values.items():
                probs = key.endswith("_prob") and isinstance(v, list)
                if probs and (len(v) != n or not all(0 <= x <= 1 for x in v)):
                    raise ValueError(f"{section}.{key}: {n} probabilities in [0, 1] expected")
        return self


def validate_config(raw: Any, source: str = "configuration") -> dict[str, Any]:
    """Check a simulator configuration and return it (as the plain dict the simulator reads).

    Parameters
    ----------
    raw : Any
        The parsed YAML.
    source : str
        What to name in the message (the file).

    Returns
    -------
    dict
        ``raw`` itself.

    Raises
    ------
    SimulationError
        Naming the first bad field and what was expected.
    """
    try:
        SimulatorConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SimulationError(f"simulator {source}: {where}: {err['msg']}") from exc
    return raw
