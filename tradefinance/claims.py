"""Claims: an insured exporter's notice of non-payment, the waiting period, the indemnity.

DOMAIN.md §1.3, §1.4, §7.3; rules in ``insurer.yaml`` ``claims``. A notice must reach the insurer
within ``notice_days`` of the due date. A non-payment becomes a loss once the waiting period
(protracted default; longer for some country categories) has run from the due date; an
insolvency is a loss at once. The indemnity is ``cover x insured loss``, the insured loss being
the loss within the exporter's approved limit on the buyer (deliveries above the limit are
uninsured). The claims ratio is paid claims over earned premium.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd

from tradefinance.buyer_limits import Reason
from tradefinance.insurer_config import ClaimParams, load_insurer_config

ClaimKind = Literal["non_payment", "insolvency"]
ClaimStatus = Literal["waiting", "paid", "declined"]


@dataclass(frozen=True)
class ClaimNotice:
    """What the exporter notifies."""

    policy_id: str
    usc_code: str
    buyer_id: str
    due_date: dt.date
    notified_date: dt.date
    loss_usd: float
    kind: ClaimKind = "non_payment"


@dataclass
class ClaimAssessment:
    """The insurer's answer to a notice at an as-of date."""

    policy_id: str
    usc_code: str
    buyer_id: str
    status: ClaimStatus
    loss_usd: float
    insured_loss_usd: float
    cover: float
    indemnity_usd: float
    payable_from: dt.date | None
    reasons: list[Reason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = asdict(self)
        out["payable_from"] = None if self.payable_from is None else self.payable_from.isoformat()
        out["reasons"] = [asdict(r) for r in self.reasons]
        return out


def waiting_days(country_category: str, kind: ClaimKind, params: ClaimParams) -> int:
    """Return the waiting period (days) for a loss of this kind in this country category."""
    if kind == "insolvency" and not params.insolvency_waits:
        return 0
    return params.waiting_period_days_by_category.get(country_category, params.waiting_period_days)


def assess_claim(
    notice: ClaimNotice,
    *,
    cover: float,
    approved_limit_usd: float,
    country_category: str,
    as_of: dt.date,
    params: ClaimParams | None = None,
) -> ClaimAssessment:
    """Decide a claim: declined, waiting, or paid with its indemnity.

    Parameters
    ----------
    notice : ClaimNotice
    cover : float
        The policy's indemnity share.
    approved_limit_usd : float
        The exporter's approved limit on the buyer when it shipped.
    country_category : str
        The buyer's country category (waiting period).
    as_of : date
        When the claim is looked at.
    params : ClaimParams, optional

    Returns
    -------
    ClaimAssessment
    """
    p = params or load_insurer_config().claims
    if not notice.loss_usd > 0:
        raise ValueError(f"loss_usd must be > 0; got {notice.loss_usd}")
    if not 0 < cover <= 1:
        raise ValueError(f"cover must be in (0, 1]; got {cover}")
    if notice.notified_date < notice.due_date and notice.kind == "non_payment":
        raise ValueError("notified_date must not be before due_date for a non-payment")
    insured = min(notice.loss_usd, max(approved_limit_usd, 0.0))
    out = ClaimAssessment(
        notice.policy_id,
        notice.usc_code,
        notice.buyer_id,
        "declined",
        notice.loss_usd,
        insured,
        cover,
        0.0,
        None,
    )
    late = (notice.notified_date - notice.due_date).days
    if late > p.notice_days:
        out.reasons.append(Reason.make("claim_late", late, days=late, limit=p.notice_days))
        return out
    if insured <= 0:
        out.reasons.append(Reason.make("claim_no_limit", 0.0))
        return out
    wait = waiting_days(country_category, notice.kind, p)
    out.payable_from = notice.due_date + dt.timedelta(days=wait)
    out.indemnity_usd = cover * insured
    if insured < notice.loss_usd:
        out.reasons.append(
            Reason.make("claim_above_limit", insured, usd=f"{notice.loss_usd - insured:,.0f}")
        )
    if as_of < out.payable_from:
        out.status = "waiting"
        out.reasons.append(
            Reason.make("claim_waiting", wait, days=wait, date=out.payable_from.isoformat())
        )
        return out
    out.status = "paid"
    out.reasons.append(
        Reason.make(
            "claim_paid", out.indemnity_usd, usd=f"{out.indemnity_usd:,.0f}", cover=f"{cover:.0%}"
        )
    )
    return out


def earned_premium(policies: pd.DataFrame, as_of: dt.date) -> pd.Series:
    """Premium earned by ``as_of``, pro rata over each policy's period (``start_date``..``end_date``)."""
    start = pd.to_datetime(policies["start_date"])
    end = pd.to_datetime(policies["end_date"])
    span = (end - start).dt.days.clip(lower=1)
    done = (pd.Timestamp(as_of) - start).dt.days.clip(lower=0)
    return policies["premium_usd"].astype(float) * (done / span).clip(upper=1.0)


def claims_ratio(policies: pd.DataFrame, claims: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Claims ratio (paid ÷ earned premium) per insurer and product.

    Parameters
    ----------
    policies : DataFrame
        ``policy_id``, ``insurer``, ``product_id``, ``premium_usd``, ``start_date``,
        ``end_date``.
    claims : DataFrame
        ``policy_id``, ``paid_usd``, ``status``, ``decision_date``: paid claims decided by
        ``as_of`` count.
    as_of : date

    Returns
    -------
    DataFrame
        ``insurer``, ``product_id``, ``earned_premium_usd``, ``paid_usd``, ``claims``,
        ``claims_ratio`` (NaN when nothing is earned yet).
    """
    pol = policies.assign(earned_premium_usd=earned_premium(policies, as_of))
    done = claims[
        (claims["status"] == "paid")
        & (pd.to_datetime(claims["decision_date"]) <= pd.Timestamp(as_of))
    ]
    paid = done.merge(pol[["policy_id", "insurer", "product_id"]], on="policy_id", how="inner")
    keys = ["insurer", "product_id"]
    earned = pol.groupby(keys)["earned_premium_usd"].sum()
    got = paid.groupby(keys)["paid_usd"].agg(["sum", "count"])
    out = pd.DataFrame({"earned_premium_usd": earned}).join(got, how="left").fillna(0.0)
    out = out.rename(columns={"sum": "paid_usd", "count": "claims"})
    out["claims"] = out["claims"].astype(int)
    ratio = out["paid_usd"] / out["earned_premium_usd"].where(out["earned_premium_usd"] > 0)
    out["claims_ratio"] = ratio
    return out.reset_index()
