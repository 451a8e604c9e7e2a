"""Loan and export-credit-insurance pricing: pure functions over configured parameters.

Loan rate (DOMAIN.md §5.4)::

    rate = reference + PD x LGD + K x (hurdle ROE - reference) + opex + margin

with the capital requirement ``K`` from the Basel IRB corporate formula (Vasicek, 99.9 %) and its
SME firm-size adjustment, clipped to a product's rate range.

Premium rate (DOMAIN.md §1.2)::

    rate = country base x buyer x terms x tenor x cover x exporter grade x product

Every number comes from ``tradefinance/config/pricing.yaml``; nothing here is a quoted price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.labels import oecd_category_label
from features.texts import text

PAYMENT_TERMS: tuple[str, ...] = ("L/C", "D/P", "D/A", "O/A")
PaymentTerms = Literal["L/C", "D/P", "D/A", "O/A"]

_NORMAL = NormalDist()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CapitalParams(_Strict):
    """Basel IRB capital parameters."""

    confidence: float = Field(gt=0.5, lt=1.0)
    scaler: float = Field(gt=0)
    sme_turnover_min_meur: float = Field(gt=0)
    sme_turnover_max_meur: float = Field(gt=0)
    sme_correlation_cut: float = Field(ge=0, lt=0.12)
    maturity_min_years: float = Field(gt=0)
    maturity_max_years: float = Field(gt=0)
    correlation_low: float = Field(gt=0, lt=1)
    correlation_high: float = Field(gt=0, lt=1)
    correlation_pd_decay: float = Field(gt=0)
    maturity_b: tuple[float, float]
    maturity_centre_years: float = Field(gt=0)


def model_pd_floor() -> float:
    """Return the one PD floor: the model's (``training/config/model.yaml``)."""
    from training.scale import PD_FLOOR

    return PD_FLOOR


@lru_cache(maxsize=1)
def shipped_cny_per_usd() -> float:
    """Return the one CNY-per-USD rate, ``usd_cny`` of ``features/config/feature_params.yaml``."""
    from features.feature_availability import PARAMS_PATH

    return float(yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))["usd_cny"])


class LoanParams(_Strict):
    """Loan pricing and limit-sizing parameters.

    ``pd_floor`` and ``cny_per_usd`` default to the project's single values (the model's PD
    floor, the features' exchange rate); a deployment's pricing file may still set them.
    """

    reference_rate: float = Field(ge=0, lt=1)
    hurdle_roe: float = Field(ge=0, lt=1)
    opex: float = Field(ge=0, lt=1)
    margin: float = Field(ge=-1, lt=1)
    pd_floor: float = Field(default_factory=lambda: model_pd_floor(), gt=0, lt=1)
    lgd_unsecured: float = Field(gt=0, le=1)
    lgd_insured_loading: float = Field(ge=0, le=1)
    capital: CapitalParams
    cny_per_usd: float = Field(default_factory=lambda: shipped_cny_per_usd(), gt=0)
    eur_per_usd: float = Field(gt=0)
    limit_pd_zero: float = Field(gt=0, le=1)
    limit_round_cny: float = Field(gt=0)


class BuyerGradeParams(_Strict):
    """Premium factor and credit-limit share of one insurer buyer grade."""

    factor: float = Field(gt=0)
    limit_share: float = Field(gt=0, le=1)


class CountryTableRef(_Strict):
    """Where the OECD country-risk table is shipped: a path beside a module's file."""

    module: str
    resource: str
    as_of: str


class InsuranceParams(_Strict):
    """STECI premium parameters."""

    default_product: str
    country_table: CountryTableRef
    country_base_rate: dict[str, float]
    declined_categories: list[str]
    buyer_grades: dict[str, BuyerGradeParams]
    terms: dict[str, float]
    credit_day_bands: list[int]
    tenor_loading: float = Field(ge=0, lt=1)
    tenor_year_days: int = Field(gt=0)
    max_credit_days: int = Field(gt=0)
    reference_cover: float = Field(gt=0, le=1)
    min_cover: float = Field(gt=0, le=1)
    max_cover: float = Field(gt=0, le=1)
    buyer_limit_base_usd: dict[str, float]
    max_liability_premium_multiple: float = Field(gt=0)
    minimum_premium_usd: float = Field(ge=0)
    exporter_grade_factor: dict[str, float]

    @model_validator(mode="after")
    def _consistent(self) -> InsuranceParams:
        missing = [t for t in PAYMENT_TERMS if t not in self.terms]
        if missing:
            raise ValueError(f"insurance.terms must list {list(PAYMENT_TERMS)}; missing {missing}")
        order = [self.terms[t] for t in PAYMENT_TERMS]
        if order != sorted(order):
            raise ValueError(
                f"insurance.terms must not decrease from L/C to O/A; got {dict(self.terms)}"
            )
        if self.credit_day_bands != sorted(self.credit_day_bands):
            raise ValueError("insurance.credit_day_bands must be increasing")
        if self.credit_day_bands[-1] < self.max_credit_days:
            raise ValueError("insurance.credit_day_bands must reach max_credit_days")
        if not self.min_cover <= self.reference_cover <= self.max_cover:
            raise ValueError("insurance: need min_cover <= reference_cover <= max_cover")
        for cat in self.country_base_rate:
            if cat not in self.buyer_limit_base_usd:
                raise ValueError(f"insurance.buyer_limit_base_usd lacks category {cat!r}")
        return self


class PremiumSubsidy(_Strict):
    """Municipal premium subsidy."""

    exports_threshold_usd: float = Field(ge=0)
    share: float = Field(ge=0, le=1)
    share_above_threshold: float = Field(ge=0, le=1)


class InterestSubsidy(_Strict):
    """Interest subsidy on policy financing."""

    share: float = Field(ge=0, le=1)
    cap_cny_per_year: float = Field(ge=0)


class Subsidies(_Strict):
    """Subsidy rules."""

    premium: PremiumSubsidy
    policy_financing_interest: InterestSubsidy


class DefaultShipment(_Strict):
    """Shipment assumed for indicative premiums in matching."""

    buyer_country: str
    buyer_grade: str
    terms: PaymentTerms
    credit_days: int = Field(gt=0)


class SimulationParams(_Strict):
    """Measure-19 simulation parameters."""

    buyer_loss_rate: float = Field(ge=0, le=1)
    exporter_loss_share: float = Field(ge=0, le=1)
    insurable_share: float = Field(gt=0, le=1)


class PricingConfig(_Strict):
    """Everything the pricing formulas use."""

    loan: LoanParams
    insurance: InsuranceParams
    subsidies: Subsidies
    default_shipment: DefaultShipment
    simulation: SimulationParams


def load_pricing_config(path: str | Path | None = None) -> PricingConfig:
    """Load and validate the pricing configuration.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file; the shipped ``tradefinance/config/pricing.yaml`` when omitted.

    Returns
    -------
    PricingConfig
    """
    if path is None:
        return _default_pricing_config()
    return PricingConfig.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def _default_pricing_config() -> PricingConfig:
    text = (Path(__file__).parent / "config" / "pricing.yaml").read_text(encoding="utf-8")
    return PricingConfig.model_validate(yaml.safe_load(text))


# ---------------------------------------------------------------------------------------------
# Basel IRB capital
# ---------------------------------------------------------------------------------------------


def irb_correlation(
    pd: float, turnover_meur: float | None = None, params: CapitalParams | None = None
) -> float:
    """Asset correlation of the Basel IRB corporate formula with the SME size adjustment.

    Parameters
    ----------
    pd : float
        One-year probability of default (already floored).
    turnover_meur : float, optional
        Annual turnover in EUR million; ``None`` means no SME adjustment.
    params : CapitalParams, optional
        SME bounds; the shipped configuration when omitted.

    Returns
    -------
    float
        Correlation ``R`` between 0.08 and 0.24.
    """
    p = params or load_pricing_config().loan.capital
    k = p.correlation_pd_decay
    w = (1.0 - math.exp(-k * pd)) / (1.0 - math.exp(-k))
    r = p.correlation_low * w + p.correlation_high * (1.0 - w)
    if turnover_meur is not None and turnover_meur < p.sme_turnover_max_meur:
        s = min(max(turnover_meur, p.sme_turnover_min_meur), p.sme_turnover_max_meur)
        span = p.sme_turnover_max_meur - p.sme_turnover_min_meur
        r -= p.sme_correlation_cut * (1.0 - (s - p.sme_turnover_min_meur) / span)
    return r


def irb_capital(
    pd: float,
    lgd: float,
    maturity_years: float,
    turnover_meur: float | None = None,
    params: CapitalParams | None = None,
) -> float:
    """Capital requirement ``K`` per unit of exposure (Basel IRB corporate, Vasicek).

    ``RW = 12.5 x K``. With PD 1 %, LGD 45 %, M 2.5 and no SME adjustment RW is 92.3 %
    (97.9 % with the Basel II 1.06 scaler), as in the Basel tables.

    Parameters
    ----------
    pd : float
        One-year probability of default, in (0, 1).
    lgd : float
        Loss given default, in [0, 1].
    maturity_years : float
        Effective maturity, clipped to the configured 1-5 years.
    turnover_meur : float, optional
        Annual turnover in EUR million for the SME adjustment.
    params : CapitalParams, optional
        Capital parameters; the shipped configuration when omitted.

    Returns
    -------
    float
        ``K`` (a fraction of exposure at default).
    """
    if not 0.0 < pd < 1.0:
        raise ValueError(f"pd must be in (0, 1); got {pd}")
    if not 0.0 <= lgd <= 1.0:
        raise ValueError(f"lgd must be in [0, 1]; got {lgd}")
    p = params or load_pricing_config().loan.capital
    m = min(max(maturity_years, p.maturity_min_years), p.maturity_max_years)
    r = irb_correlation(pd, turnover_meur, p)
    b = (p.maturity_b[0] - p.maturity_b[1] * math.log(pd)) ** 2
    conditional = _NORMAL.cdf(
        (_NORMAL.inv_cdf(pd) + math.sqrt(r) * _NORMAL.inv_cdf(p.confidence)) / math.sqrt(1.0 - r)
    )
    mc = p.maturity_centre_years
    k = (lgd * conditional - pd * lgd) * (1.0 + (m - mc) * b) / (1.0 - (mc - 1.0) * b)
    return max(k, 0.0) * p.scaler


# ---------------------------------------------------------------------------------------------
# Loans
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoanRate:
    """A loan rate and its components (annual, as fractions)."""

    pd: float
    lgd: float
    maturity_years: float
    capital_k: float
    reference: float
    expected_loss: float
    capital_charge: float
    opex: float
    margin: float
    raw_rate: float
    rate: float
    clipped: Literal["floor", "cap"] | None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON responses."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def insured_lgd(cover: float, params: LoanParams | None = None) -> float:
    """Effective LGD of a loan whose repayment is backed by an assigned insurance policy.

    ``(1 - cover) + loading`` for claim delay and disputes, never above the unsecured LGD.
    """
    p = params or load_pricing_config().loan
    if not 0.0 < cover <= 1.0:
        raise ValueError(f"cover must be in (0, 1]; got {cover}")
    return min(1.0 - cover + p.lgd_insured_loading, p.lgd_unsecured)


def loan_rate(
    pd: float,
    *,
    lgd: float | None = None,
    tenor_months: float = 12.0,
    turnover_meur: float | None = None,
    rate_range: tuple[float, float] | None = None,
    params: LoanParams | None = None,
) -> LoanRate:
    """Risk-based loan rate with its breakdown (DOMAIN.md §5.4).

    Parameters
    ----------
    pd : float
        The firm's 12-month PD; floored at the configured PD floor.
    lgd : float, optional
        Loss given default; the unsecured LGD when omitted.
    tenor_months : float
        Loan tenor; effective maturity is tenor / 12 years clipped to the IRB 1-5 years.
    turnover_meur : float, optional
        Annual turnover in EUR million (SME correlation adjustment).
    rate_range : (float, float), optional
        The product's minimum and maximum rate; the result is clipped to it.
    params : LoanParams, optional
        Loan parameters; the shipped configuration when omitted.

    Returns
    -------
    LoanRate
    """
    p = params or load_pricing_config().loan
    if not 0.0 <= pd < 1.0:
        raise ValueError(f"pd must be in [0, 1); got {pd}")
    pd_used = max(pd, p.pd_floor)
    lgd_used = p.lgd_unsecured if lgd is None else lgd
    maturity = min(
        max(tenor_months / 12.0, p.capital.maturity_min_years), p.capital.maturity_max_years
    )
    k = irb_capital(pd_used, lgd_used, maturity, turnover_meur, p.capital)
    el = pd_used * lgd_used
    cap_charge = k * (p.hurdle_roe - p.reference_rate)
    raw = p.reference_rate + el + cap_charge + p.opex + p.margin
    rate = raw
    clipped: Literal["floor", "cap"] | None = None
    if rate_range is not None:
        lo, hi = rate_range
        if raw < lo:
            rate, clipped = lo, "floor"
        elif raw > hi:
            rate, clipped = hi, "cap"
    return LoanRate(
        pd=pd_used,
        lgd=lgd_used,
        maturity_years=maturity,
        capital_k=k,
        reference=p.reference_rate,
        expected_loss=el,
        capital_charge=cap_charge,
        opex=p.opex,
        margin=p.margin,
        raw_rate=raw,
        rate=rate,
        clipped=clipped,
    )


class _PricedProduct(Protocol):
    """What :func:`loan_lgd` reads of a product (``tradefinance.products.Product``)."""

    id: str
    policy_assignment: bool

    @property
    def pricing(self) -> Any:
        """The product's loan pricing (rate range, LGD) or None."""


class PricingInputError(ValueError):
    """A pricing request the product does not allow.

    Attributes
    ----------
    field : str
        The request field at fault (e.g. ``insured_cover``).
    expected : str
        What would have been accepted.
    """

    def __init__(self, field: str, message: str, expected: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.expected = expected


def loan_lgd(
    product: _PricedProduct | None,
    *,
    lgd: float | None = None,
    insured_cover: float | None = None,
    params: LoanParams | None = None,
) -> float | None:
    """Choose the LGD a loan is priced at: the product's, an explicit one, or a policy's.

    ``lgd`` and ``insured_cover`` are two ways of saying the same thing, so at most one may be
    given; a policy may only be assigned to a product that accepts assignment
    (``policy_assignment: true``) or to a loan priced without a product.

    Parameters
    ----------
    product : Product, optional
        The financing product (its LGD is the default); None prices a generic loan.
    lgd : float, optional
        An explicit loss given default.
    insured_cover : float, optional
        Cover of an export-credit policy assigned to the bank (LGD from :func:`insured_lgd`).
    params : LoanParams, optional

    Returns
    -------
    float or None
        The LGD; None means the configured unsecured LGD.

    Raises
    ------
    PricingInputError
        Both ``lgd`` and ``insured_cover``, or a cover on a product without assignment.
    """
    if lgd is not None and insured_cover is not None:
        raise PricingInputError(
            "insured_cover",
            "lgd and insured_cover cannot both be given (the cover sets the LGD)",
            "either lgd or insured_cover",
        )
    if insured_cover is not None:
        if product is not None and not product.policy_assignment:
            raise PricingInputError(
                "insured_cover",
                f"product {product.id!r} does not accept an assigned insurance policy",
                "no insured_cover for this product, or a product with policy_assignment",
            )
        covered = insured_lgd(insured_cover, params)
        if product is not None and product.pricing is not None:
            return min(product.pricing.lgd, covered)
        return covered
    if lgd is not None:
        return lgd
    return product.pricing.lgd if product is not None and product.pricing is not None else None


def turnover_meur(exports_12m_usd: float | None, params: LoanParams | None = None) -> float | None:
    """Annual turnover in EUR million from 12-month exports (``None`` when unknown)."""
    if exports_12m_usd is None or not math.isfinite(exports_12m_usd):
        return None
    p = params or load_pricing_config().loan
    return exports_12m_usd * p.eur_per_usd / 1e6


# ---------------------------------------------------------------------------------------------
# Insurance premium
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PremiumComponent:
    """One multiplicative factor of the premium rate and the rate once it is applied.

    ``name`` is the code (country, buyer, terms, tenor, cover, exporter, product), ``basis``
    the English basis kept for API users, ``label_zh`` / ``label_en`` the catalog texts.
    """

    name: str
    basis: str
    factor: float
    rate_after: float
    label_zh: str = ""
    label_en: str = ""


@dataclass(frozen=True)
class PremiumRate:
    """A premium rate (fraction of insured value) with its components in application order."""

    rate: float
    components: list[PremiumComponent] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON responses."""
        return {"rate": self.rate, "components": [c.__dict__ for c in self.components]}


def credit_day_band(credit_days: int, params: InsuranceParams | None = None) -> int:
    """Return the band (upper bound, days) a credit period falls in; raises beyond the maximum."""
    p = params or load_pricing_config().insurance
    if credit_days < 0 or credit_days > p.max_credit_days:
        raise ValueError(f"credit_days must be in 0..{p.max_credit_days}; got {credit_days}")
    return next(b for b in p.credit_day_bands if credit_days <= b)


def tenor_factor(credit_days: int, params: InsuranceParams | None = None) -> float:
    """Return the tenor factor, a fixed loading plus time at risk: ``loading + (1 - loading) x band / year``."""
    p = params or load_pricing_config().insurance
    band = credit_day_band(credit_days, p)
    return p.tenor_loading + (1.0 - p.tenor_loading) * band / p.tenor_year_days


def premium_rate(
    *,
    country_category: str,
    buyer_grade: str,
    terms: str,
    credit_days: int,
    cover: float,
    exporter_grade: str,
    product_factor: float = 1.0,
    params: InsuranceParams | None = None,
) -> PremiumRate:
    """Premium rate with every component (DOMAIN.md §1.2).

    Parameters
    ----------
    country_category : str
        OECD category ``"0"``..``"6"`` or ``"HI"`` (high-income, unclassified). Declined
        categories (7) raise: the caller turns that into a decline.
    buyer_grade : str
        Insurer buyer grade (A, B, C, D or unknown).
    terms : str
        ``L/C``, ``D/P``, ``D/A`` or ``O/A``.
    credit_days : int
        Credit period in days, at most the configured maximum.
    cover : float
        Indemnity percentage as a fraction, within the configured range.
    exporter_grade : str
        The exporter's master-scale grade.
    product_factor : float
        The insurance product's own multiplier (e.g. an SME easy-cover product).
    params : InsuranceParams, optional
        Insurance parameters; the shipped configuration when omitted.

    Returns
    -------
    PremiumRate
    """
    p = params or load_pricing_config().insurance
    if country_category not in p.country_base_rate:
        raise ValueError(
            f"country_category must be one of {sorted(p.country_base_rate)}; got {country_category!r}"
        )
    if buyer_grade not in p.buyer_grades:
        raise ValueError(
            f"buyer_grade must be one of {sorted(p.buyer_grades)}; got {buyer_grade!r}"
        )
    if terms not in p.terms:
        raise ValueError(f"terms must be one of {list(PAYMENT_TERMS)}; got {terms!r}")
    if not p.min_cover <= cover <= p.max_cover:
        raise ValueError(f"cover must be in [{p.min_cover}, {p.max_cover}]; got {cover}")
    if exporter_grade not in p.exporter_grade_factor:
        raise ValueError(
            f"exporter_grade must be one of {list(p.exporter_grade_factor)}; got {exporter_grade!r}"
        )
    if product_factor <= 0:
        raise ValueError(f"product_factor must be > 0; got {product_factor}")
    band = credit_day_band(credit_days, p)
    steps = [
        ("country", f"OECD category {country_category}", p.country_base_rate[country_category]),
        ("buyer", f"buyer grade {buyer_grade}", p.buyer_grades[buyer_grade].factor),
        ("terms", terms, p.terms[terms]),
        ("tenor", f"{credit_days} days (band <= {band})", tenor_factor(credit_days, p)),
        ("cover", f"{cover:.0%} vs {p.reference_cover:.0%}", cover / p.reference_cover),
        ("exporter", f"exporter grade {exporter_grade}", p.exporter_grade_factor[exporter_grade]),
        ("product", "product factor", product_factor),
    ]
    fields: dict[str, dict[str, Any]] = {
        "buyer": {"grade": buyer_grade},
        "terms": {"terms": terms},
        "tenor": {"credit_days": credit_days, "band": band},
        "cover": {"cover": f"{cover:.0%}", "reference": f"{p.reference_cover:.0%}"},
        "exporter": {"grade": exporter_grade},
    }

    def label(name: str, lang: str) -> str:
        if name == "country":
            return text(
                "premium.country", lang, category=oecd_category_label(country_category, lang)
            )
        if name == "buyer" and buyer_grade == "unknown":
            return text("premium.buyer_unknown", lang)
        return text(f"premium.{name}", lang, **fields.get(name, {}))

    rate = 1.0
    components = []
    for name, basis, factor in steps:
        rate *= factor
        components.append(
            PremiumComponent(
                name=name,
                basis=basis,
                factor=factor,
                rate_after=rate,
                label_zh=label(name, "zh"),
                label_en=label(name, "en"),
            )
        )
    return PremiumRate(rate=rate, components=components)
