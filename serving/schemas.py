"""Request and response bodies of the scoring, consent, audit and admin endpoints.

Every model forbids unknown fields, so a misspelt field is a 422 naming it, not a silent default.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

USCC_EXAMPLE = "91440300MA5G2X7KX0"
#: Largest row id a parameter may name (the id columns are 32-bit on PostgreSQL).
MAX_ID = 2**31 - 1


class Strict(BaseModel):
    """Base: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")


class Reason(Strict):
    """One reason code: a feature that pushes the PD up."""

    code: str = Field(examples=["R012"])
    feature: str = Field(examples=["max_dpd_12m"])
    value: Any = Field(description="the firm's value of the feature (null when missing)")
    contribution: float = Field(description="push on the calibrated log-odds of default (> 0)")
    text_en: str
    text_zh: str


class DefaultReason(Strict):
    """An in-default rule (``features/config/default_status.yaml``) the firm meets."""

    feature: str = Field(examples=["current_dpd"])
    op: str = Field(examples=[">="])
    threshold: float = Field(examples=[90])
    value: Any = Field(description="the firm's value of the feature")
    text_en: str
    text_zh: str


class Score(Strict):
    """A firm's score.

    A firm in default at the as-of date (``in_default``) is not graded by the model: it gets
    grade and supervision class ``D``, PD 1.0 and no score (null: the points scale has no
    finite value at PD 1); ``default_reasons`` say which rules put it there. The model's own
    outputs stay available as ``model_pd``, ``model_score`` and ``model_grade``, and
    ``reasons`` are still the model's adverse reasons.
    """

    usc_code: str = Field(examples=[USCC_EXAMPLE])
    name: str | None = None
    pd: float = Field(
        description="12-month probability of default (calibrated, floored); 1.0 when in default"
    )
    score: float | None = Field(description="points: higher is safer; null when in default")
    grade: str = Field(
        examples=["BBB"], description="master-scale grade, or D (after C) when in default"
    )
    supervision_class: str = Field(examples=["B"])
    in_default: bool = Field(
        default=False, description="in default at the as-of date (see default_reasons)"
    )
    default_reasons: list[DefaultReason] = Field(
        default_factory=list, description="in-default rules met (empty when performing)"
    )
    model_pd: float | None = Field(default=None, description="the model's PD (before default)")
    model_score: float | None = Field(default=None, description="the model's score")
    model_grade: str | None = Field(default=None, description="the model's grade")
    reasons: list[Reason]
    model_version: str
    as_of: date = Field(description="as-of date of the features")


class BatchRequest(Strict):
    """Firms to score in one call."""

    usc_codes: list[str] = Field(
        min_length=1,
        description="USCCs (at most the configured batch maximum, 5,000 by default)",
        examples=[[USCC_EXAMPLE]],
    )


class BatchError(Strict):
    """A firm of a batch that got no score, and why."""

    usc_code: str
    status: int = Field(description="what the single-firm endpoint would have answered")
    detail: str


class BatchResponse(Strict):
    """Scores of the firms the caller may see; the others listed with the reason."""

    results: list[Score]
    errors: list[BatchError]
    model_version: str
    as_of: date


class Contribution(Strict):
    """One feature's contribution to the calibrated log-odds."""

    feature: str
    value: Any
    contribution: float


class Explanation(Score):
    """Every contribution of a firm's score."""

    log_odds: float = Field(description="calibrated log-odds = base_value + sum of contributions")
    base_value: float
    contributions: list[Contribution] = Field(
        description="all features, largest |contribution| first"
    )
    industry: str | None = None
    peer_percentile: float = Field(
        description="share of the firm's industry peers (in %) scoring at or below it; 100 = best"
    )


class Outcome(Strict):
    """PD, score and grade of one feature vector."""

    pd: float
    score: float
    grade: str
    supervision_class: str


class WhatIfRequest(Strict):
    """Changes to actionable features."""

    changes: dict[str, Any] = Field(
        min_length=1,
        description="feature -> new value; only actionable catalog features, within bounds",
        examples=[{"refund_rate_6m": 0.02, "current_dpd": 0}],
    )


class Change(Strict):
    """One changed feature."""

    feature: str
    before: Any
    after: Any


class WhatIfResponse(Strict):
    """Before and after a change (the after is a live model call)."""

    usc_code: str
    before: Outcome
    after: Outcome
    changes: list[Change]
    model_version: str
    as_of: date


class RecourseRequest(Strict):
    """The grade to reach."""

    target_grade: str = Field(examples=["BBB"], description="reach this grade or a better one")


class RecourseChange(Change):
    """One change of a recourse plan with its normalised cost."""

    cost: float


class RecourseResponse(Strict):
    """The cheapest plausible changes found that reach the target (re-checked by scoring)."""

    usc_code: str
    target_grade: str
    reached: bool = Field(description="whether the re-scored changed vector meets the target")
    already_met: bool
    before: Outcome
    after: Outcome
    changes: list[RecourseChange]
    cost: float
    evaluated: int = Field(description="candidate vectors scored by the search")
    model_version: str
    as_of: date


class ConsentRequest(Strict):
    """A firm's grant of access to an institution."""

    institution: str = Field(min_length=1, max_length=200, examples=["Demo Bank"])
    scopes: list[Literal["score", "explanation", "quote"]] = Field(
        min_length=1, examples=[["score", "explanation"]]
    )
    purpose: str = Field(min_length=1, max_length=200, examples=["working-capital loan review"])
    expires_at: datetime = Field(description="end of the consent (with time zone), in the future")


class ConsentOut(Strict):
    """A consent and its state now."""

    id: int
    firm_usc: str
    institution: str
    scopes: list[str]
    purpose: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class AccessRecord(Strict):
    """One access to the firm's data."""

    id: int
    time: str
    institution: str
    role: str
    purpose: str
    endpoint: str
    model_version: str
    request_id: str


class AccessLog(Strict):
    """Who looked at a firm's record, newest first."""

    usc_code: str
    records: list[AccessRecord]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class ReloadRequest(Strict):
    """What to reload (defaults: the configured model source and the current snapshot)."""

    model_dir: str | None = Field(
        None, description="model package folder; registry champion when null"
    )
    snapshot: str | None = Field(None, description="snapshot Parquet file")


class ServedInfo(Strict):
    """What the service serves."""

    model_version: str
    model_source: str | None = Field(description="where the model came from (admins only)")
    snapshot: str | None = Field(description="the snapshot file (admins only)")
    as_of: date
    firms: int
    loaded_at: datetime


class AuditVerifyResponse(Strict):
    """Result of checking the audit chain."""

    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str | None


class Health(Strict):
    """Liveness."""

    status: Literal["ok"]


class Readiness(Strict):
    """Readiness: a model and snapshot are served, the database answers and takes writes, and
    no audit write failed recently.
    """

    ready: bool
    database: bool
    database_writable: bool = Field(description="a write probe (rolled back) succeeded")
    audit_writes: bool = Field(
        description="no audit write failed within the configured window (or one succeeded since)"
    )
    served: ServedInfo | None
    last_error: str | None = Field(description="the last refused reload's error (admins only)")
    reload_failed: bool = Field(description="the last reload was refused")


# ---------------------------------------------------------------------------------------------
# Matching, pricing, insurance quotes and regulator aggregates (typed answers)
# ---------------------------------------------------------------------------------------------


class Open(BaseModel):
    """Base of domain answers: the fields below are typed; a field a newer domain version adds
    passes through rather than failing the answer.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Scalar = str | float | int | bool | None
RuleValue = Scalar | list[Scalar]


class TraceRowOut(Open):
    """One rule checked against the firm, the need or the model output."""

    rule: str
    field: str
    op: str
    required: RuleValue = Field(description="the rule's threshold or set")
    actual: RuleValue = Field(
        description="the firm's value (null when missing, or without the explanation scope)"
    )
    passed: bool = Field(alias="pass")
    source: str = Field(description="firm, model, need or bundle")


class LoanPriceOut(Open):
    """A loan rate and its components (DOMAIN.md §5.4)."""

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


class PremiumComponentOut(Open):
    """One factor of a premium rate."""

    name: str
    basis: str
    factor: float
    rate_after: float


class DeclineOut(Open):
    """One reason cover is declined."""

    code: str
    message_en: str
    message_zh: str
    params: dict[str, Any] = Field(default_factory=dict)


class QuoteNoteOut(Open):
    """Where a quote's buyer grade came from (code, parameters, both languages)."""

    code: str
    message_en: str
    message_zh: str


class QuoteOut(Open):
    """An insurance quote or a decline (a decline is an answer, not an error)."""

    product_id: str
    decision: Literal["quoted", "declined"]
    buyer_country: str
    country_category: str | None
    terms: str
    credit_days: int
    cover: float
    amount_usd: float
    buyer_id: str | None = None
    buyer_grade: str | None = None
    buyer_grade_source: Literal["platform", "caller", "product"] | None = None
    buyer_grade_as_of: str | None = None
    buyer_pd: float | None = None
    notes: list[QuoteNoteOut] = Field(default_factory=list)
    rate: float | None = None
    components: list[PremiumComponentOut] = Field(default_factory=list)
    buyer_credit_limit_usd: float | None = None
    insured_amount_usd: float | None = None
    uninsured_amount_usd: float | None = None
    premium_usd: float | None = None
    max_liability_usd: float | None = None
    subsidy_share: float | None = None
    subsidy_usd: float | None = None
    net_premium_usd: float | None = None
    declines: list[DeclineOut] = Field(default_factory=list)
    trace: list[TraceRowOut] = Field(default_factory=list)


class RecourseHintOut(Open):
    """What a failed rule asks for."""

    field: str
    rule: str
    required: RuleValue
    actual: RuleValue
    change: str
    actionable: bool | None


class PlanAfterOut(Open):
    """The re-scored outcome of a plan."""

    pd: float | None = None
    score: float | None = None
    grade: str | None = None


class ProductPlanOut(Open):
    """A model-based recourse plan towards a product's eligibility."""

    searched: bool
    reached: bool
    blocked_by: list[str]
    changes: list[RecourseChange]
    after: PlanAfterOut | None = None


class ProductRecourseOut(Open):
    """Hints for every failed rule, and a plan when one was searched."""

    hints: list[RecourseHintOut]
    plan: ProductPlanOut | None = None


class FinancingMatchOut(Open):
    """A financing product ranked for the firm and need."""

    product_id: str
    name_en: str
    name_zh: str
    provider_en: str
    provider_zh: str
    kind: str
    policy_tags: list[int]
    subsidies: list[str]
    eligible: bool
    trace: list[TraceRowOut]
    failed: int
    limit_cny: float | None = None
    offer_cny: float | None = None
    covers_need: bool | None = None
    price: LoanPriceOut | None = None
    interest_cny: float | None = None
    recourse: ProductRecourseOut | None = Field(
        default=None, description="null when eligible, or without the explanation scope"
    )


class InsuranceMatchOut(Open):
    """An insurance product ranked for the firm."""

    product_id: str
    name_en: str
    name_zh: str
    provider_en: str
    provider_zh: str
    kind: str
    policy_tags: list[int]
    subsidies: list[str]
    eligible: bool
    requested: bool
    trace: list[TraceRowOut]
    failed: int
    limit_usd: float | None = None
    quote: QuoteOut | None = None
    recourse: ProductRecourseOut | None = None


class BundleOut(Open):
    """Insurance plus policy financing, priced bundled and unbundled."""

    financing_id: str
    insurance_id: str
    name_en: str
    name_zh: str
    eligible_unbundled: bool
    trace: list[TraceRowOut]
    cover: float | None = None
    offer_cny: float | None = None
    lgd_unbundled: float | None = None
    lgd_bundled: float | None = None
    rate_unbundled: float | None = None
    rate_bundled: float | None = None
    price_unbundled: LoanPriceOut | None = None
    price_bundled: LoanPriceOut | None = None
    interest_unbundled_cny: float | None = None
    interest_bundled_cny: float | None = None
    interest_subsidy_cny: float | None = None
    net_premium_cny: float | None = None
    saving_cny: float | None = None
    premium_quote: QuoteOut | None = None


class ShipmentOut(Open):
    """The shipment of a need."""

    buyer_country: str
    buyer_grade: str
    terms: str
    credit_days: int


class NeedOut(Open):
    """The financing need as understood."""

    amount_cny: float
    purpose: str
    tenor_months: int
    insurance_wanted: bool
    shipment: ShipmentOut | None = None


class MatchResponse(Strict):
    """Every product ranked for the firm and need, and the bundles."""

    usc_code: str
    grade: str
    pd: float
    in_default: bool = False
    need: NeedOut
    financing: list[FinancingMatchOut]
    insurance: list[InsuranceMatchOut]
    bundles: list[BundleOut]
    model_version: str
    as_of: date
    catalog_version: str


class LoanPriceResponse(Strict):
    """A loan rate and its components."""

    usc_code: str
    product_id: str | None
    grade: str
    price: LoanPriceOut
    model_version: str
    as_of: date


class QuoteResponse(Strict):
    """A premium quote or a decline."""

    usc_code: str
    exporter_grade: str
    quote: QuoteOut
    model_version: str
    as_of: date


class ProductRuleOut(Open):
    """An eligibility rule of a product."""

    field: str
    op: str
    value: RuleValue
    if_missing: str
    bundle: bool
    text: str


class ProviderOut(Open):
    """Who offers a product."""

    name_en: str
    name_zh: str
    fictional: bool


class ProductOut(Open):
    """A product of the catalog (the settings file's fields plus each rule's text)."""

    id: str
    name_en: str
    name_zh: str
    provider: ProviderOut
    kind: str
    purposes: list[str]
    rules: list[ProductRuleOut]
    policy_tags: list[int]
    subsidies: list[str]
    amount: dict[str, float] | None = None
    tenor: dict[str, int] | None = None
    advance_rate: float | None = None
    limit: dict[str, str | float] | None = None
    pricing: dict[str, float] | None = None
    insurance: dict[str, Any] | None = None
    policy_assignment: bool = False
    source: str | None = None


class ProductsResponse(Strict):
    """The product catalog."""

    version: str
    products: list[ProductOut]


class CountryOut(Strict):
    """A country of the OECD risk table."""

    iso3: str
    name: str
    name_zh: str = Field(description="name from the text catalog (country.<ISO3>)")
    name_en: str
    category_zh: str = Field(description="the category as people read it, e.g. 经合组织第4类")
    category_en: str
    crc: int | None
    category: str
    high_income_unclassified: bool
    declined: bool


class CountriesResponse(Strict):
    """The OECD country-risk table used for premiums."""

    as_of: str
    countries: list[CountryOut]


class CoverageSummaryOut(Open):
    """Headline numbers of the served snapshot."""

    firms: int
    in_default_firms: int | None = None
    in_default_share: float | None = None
    mean_pd: float | None = None
    median_pd: float | None = None
    exporting_share: float | None = None
    insured_share: float | None = None


class GradeCountOut(Open):
    """Firms in one grade."""

    grade: str
    count: int
    share: float


class ProductShareOut(Open):
    """How many firms a product's rules accept."""

    product_id: str
    name_en: str
    name_zh: str
    kind: str
    policy_tags: list[int]
    firms: int
    eligible: int
    share: float


class OverviewResponse(Strict):
    """Headline numbers, grade distribution and product coverage."""

    summary: CoverageSummaryOut
    grades: list[GradeCountOut]
    products: list[ProductShareOut]
    model_version: str
    as_of: date
    catalog_version: str


class CoverStateOut(Open):
    """Insurance cover of the snapshot under one underwriting setting."""

    cover: float
    covered_firms: int
    covered_share: float
    insured_exposure_usd: float
    expected_loss_usd: float
    expected_loss_rate: float | None


class UnlockedOut(Open):
    """Firms eligible for a policy-financing product before and after."""

    product_id: str
    name_en: str
    name_zh: str
    baseline: int
    scenario: int


class Measure19Response(Strict):
    """Effect of loosening an insurer's underwriting (measure 19)."""

    product_id: str
    firms: int
    min_grade: str | None
    baseline: CoverStateOut
    scenario: CoverStateOut
    gained_firms: int
    lost_firms: int
    gained_by_grade: dict[str, int]
    expected_loss_change_usd: float
    financing_unlocked: list[UnlockedOut]
    model_version: str
    as_of: date


class Measure19CurveResponse(Strict):
    """Coverage against tail loss along a loosening path, and one loosening in detail."""

    product_id: str
    level: float
    curve: list[dict[str, Any]]
    tail: dict[str, Any]
    model_version: str
    as_of: Any
