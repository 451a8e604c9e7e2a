"""Request and response bodies of the scoring, consent, audit and admin endpoints.

Every model forbids unknown fields, so a misspelt field is a 422 naming it, not a silent default.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

USCC_EXAMPLE = "91440300MA5G2X7KX0"


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
    model_source: str
    snapshot: str
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
    """Readiness: a model and snapshot are served and the database answers."""

    ready: bool
    database: bool
    served: ServedInfo | None
    last_error: str | None
