"""The insurer's configuration (``tradefinance/config/insurer.yaml``), validated on load.

Buyer master scale, buyer credit limits and appetite, claims rules, the portfolio loss model
and the measure-19 tail simulation. Every figure lives in the YAML; nothing here is a number
a deployment should keep.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradefinance.pricing import PricingConfig, load_pricing_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuyerGradeBand(_Strict):
    """One buyer grade: its upper PD bound and its representative PD."""

    pd_upper: float = Field(gt=0, le=1)
    pd: float = Field(gt=0, lt=1)


class Appetite(_Strict):
    """How much the insurer is willing to hold."""

    max_buyer_limit_usd: float = Field(gt=0)
    max_country_exposure_usd: float = Field(gt=0)
    max_buyer_expected_loss_usd: float = Field(gt=0)


class LimitParams(_Strict):
    """Buyer credit-limit sizing."""

    size_multiplier: dict[str, float]
    refuse_pd: float = Field(gt=0, le=1)
    appetite: Appetite
    min_grant_usd: float = Field(ge=0)
    round_usd: float = Field(gt=0)

    @model_validator(mode="after")
    def _sizes(self) -> LimitParams:
        if "unknown" not in self.size_multiplier:
            raise ValueError("limits.size_multiplier must list 'unknown'")
        if any(v <= 0 for v in self.size_multiplier.values()):
            raise ValueError("limits.size_multiplier values must be > 0")
        return self


class ClaimParams(_Strict):
    """Claims rules."""

    notice_days: int = Field(gt=0)
    waiting_period_days: int = Field(ge=0)
    waiting_period_days_by_category: dict[str, int] = Field(default_factory=dict)
    insolvency_waits: bool = False


class PortfolioParams(_Strict):
    """Single-factor (plus country factor) portfolio loss model."""

    rho: float = Field(ge=0, lt=1)
    rho_country: float = Field(ge=0, lt=1)
    lgd: float = Field(gt=0, le=1)
    levels: list[float]
    headline_level: float = Field(gt=0.5, lt=1)
    scenarios: int = Field(ge=100, le=10_000_000)
    seed: int = Field(ge=0)
    block: int = Field(ge=1, le=100_000)
    convergence_tolerance: float = Field(gt=0, lt=1)
    top_n: int = Field(ge=1)

    @model_validator(mode="after")
    def _levels(self) -> PortfolioParams:
        if self.rho + self.rho_country >= 1:
            raise ValueError("portfolio: rho + rho_country must be < 1")
        if not self.levels or any(not 0.5 < q < 1 for q in self.levels):
            raise ValueError("portfolio.levels must be in (0.5, 1)")
        if self.headline_level not in self.levels:
            raise ValueError("portfolio.headline_level must be one of portfolio.levels")
        return self


class Measure19Params(_Strict):
    """The measure-19 tail curve."""

    curve_steps: int = Field(ge=2, le=50)
    max_limit_factor: float = Field(ge=1)
    min_premium_factor: float = Field(gt=0, le=1)
    scenarios: int = Field(ge=100, le=1_000_000)


class PrivacyParams(_Strict):
    """What of a buyer's payment experience may be shown."""

    min_exporters_for_detail: int = Field(ge=1)


class InsurerConfig(_Strict):
    """Everything the insurer's side uses."""

    buyer_scale: dict[str, BuyerGradeBand]
    limits: LimitParams
    claims: ClaimParams
    portfolio: PortfolioParams
    measure19: Measure19Params
    privacy: PrivacyParams

    @model_validator(mode="after")
    def _scale(self) -> InsurerConfig:
        graded = [g for g in self.buyer_scale if g != "unknown"]
        if "unknown" not in self.buyer_scale:
            raise ValueError("buyer_scale must list 'unknown'")
        bounds = [self.buyer_scale[g].pd_upper for g in graded]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds) or bounds[-1] != 1.0:
            raise ValueError("buyer_scale pd_upper must increase, best grade first, up to 1")
        lower = 0.0
        for g in graded:
            band = self.buyer_scale[g]
            if not lower <= band.pd <= band.pd_upper:
                raise ValueError(
                    f"buyer_scale.{g}.pd must lie in its band ({lower}, {band.pd_upper}]"
                )
            lower = band.pd_upper
        return self

    @property
    def buyer_grades(self) -> list[str]:
        """Graded buyer grades, best first (without ``unknown``)."""
        return [g for g in self.buyer_scale if g != "unknown"]

    def check_against(self, pricing: PricingConfig) -> InsurerConfig:
        """Raise unless every buyer grade here is priced in ``pricing`` (and vice versa)."""
        priced = set(pricing.insurance.buyer_grades)
        if set(self.buyer_scale) != priced:
            raise ValueError(
                f"insurer buyer_scale grades {sorted(self.buyer_scale)} must equal pricing "
                f"insurance.buyer_grades {sorted(priced)}"
            )
        return self


def load_insurer_config(
    path: str | Path | None = None, pricing: PricingConfig | None = None
) -> InsurerConfig:
    """Load and validate the insurer configuration.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file; the shipped ``tradefinance/config/insurer.yaml`` when omitted.
    pricing : PricingConfig, optional
        Checked for the same buyer grades; the shipped pricing when omitted.

    Returns
    -------
    InsurerConfig
    """
    if path is None and pricing is None:
        return _default_insurer_config()
    text = Path(path or Path(__file__).parent / "config" / "insurer.yaml").read_text("utf-8")
    cfg = InsurerConfig.model_validate(yaml.safe_load(text))
    return cfg.check_against(pricing or load_pricing_config())


@lru_cache(maxsize=1)
def _default_insurer_config() -> InsurerConfig:
    text = (Path(__file__).parent / "config" / "insurer.yaml").read_text(encoding="utf-8")
    return InsurerConfig.model_validate(yaml.safe_load(text)).check_against(load_pricing_config())
