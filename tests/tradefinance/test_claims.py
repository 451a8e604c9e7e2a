"""Claims: notice deadline, waiting period, indemnity within the limit, claims ratio."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tradefinance.claims import ClaimNotice, assess_claim, claims_ratio, earned_premium
from tradefinance.insurer_config import load_insurer_config

C = load_insurer_config().claims
DUE = dt.date(2025, 3, 1)


def _notice(days_late: int = 10, loss: float = 80_000.0, kind: str = "non_payment") -> ClaimNotice:
    return ClaimNotice(
        "P1", "F1", "BYUSA000001", DUE, DUE + dt.timedelta(days=days_late), loss, kind
    )  # type: ignore[arg-type]


def test_claim_waits_then_pays_cover_times_loss_within_the_limit() -> None:
    after = DUE + dt.timedelta(days=C.waiting_period_days)
    waiting = assess_claim(
        _notice(),
        cover=0.9,
        approved_limit_usd=50_000,
        country_category="HI",
        as_of=after - dt.timedelta(days=1),
    )
    assert waiting.status == "waiting" and waiting.payable_from == after
    paid = assess_claim(
        _notice(), cover=0.9, approved_limit_usd=50_000, country_category="HI", as_of=after
    )
    assert paid.status == "paid"
    assert paid.insured_loss_usd == 50_000 and paid.indemnity_usd == pytest.approx(0.9 * 50_000)
    assert "claim_above_limit" in [r.code for r in paid.reasons]
    within = assess_claim(
        _notice(loss=30_000),
        cover=0.8,
        approved_limit_usd=50_000,
        country_category="HI",
        as_of=after,
    )
    assert within.indemnity_usd == pytest.approx(0.8 * 30_000)


def test_late_notice_or_no_limit_is_declined() -> None:
    late = assess_claim(
        _notice(days_late=C.notice_days + 1),
        cover=0.9,
        approved_limit_usd=1e6,
        country_category="HI",
        as_of=dt.date(2026, 1, 1),
    )
    assert (
        late.status == "declined"
        and late.indemnity_usd == 0
        and late.reasons[0].code == "claim_late"
    )
    none = assess_claim(
        _notice(), cover=0.9, approved_limit_usd=0, country_category="HI", as_of=dt.date(2026, 1, 1)
    )
    assert none.status == "declined" and none.reasons[0].code == "claim_no_limit"


def test_waiting_period_by_category_and_insolvency() -> None:
    cat, days = next(iter(C.waiting_period_days_by_category.items()))
    long = assess_claim(
        _notice(), cover=0.9, approved_limit_usd=1e6, country_category=cat, as_of=DUE
    )
    assert long.payable_from == DUE + dt.timedelta(days=days)
    ins = assess_claim(
        _notice(kind="insolvency"),
        cover=0.9,
        approved_limit_usd=1e6,
        country_category="HI",
        as_of=DUE + dt.timedelta(days=10),
    )
    assert ins.status == ("waiting" if C.insolvency_waits else "paid")


def test_claims_ratio_is_paid_over_earned_premium_per_insurer_and_product() -> None:
    policies = pd.DataFrame(
        {
            "policy_id": ["P1", "P2", "P3"],
            "insurer": ["sinosure", "sinosure", "pingan"],
            "product_id": ["steci", "steci", "steci"],
            "premium_usd": [1200.0, 2400.0, 600.0],
            "start_date": ["2025-01-01", "2025-07-01", "2025-01-01"],
            "end_date": ["2026-01-01", "2026-07-01", "2026-01-01"],
        }
    )
    claims = pd.DataFrame(
        {
            "policy_id": ["P1", "P2", "P3", "P1"],
            "paid_usd": [900.0, 300.0, 0.0, 500.0],
            "status": ["paid", "paid", "declined", "paid"],
            "decision_date": ["2025-09-01", "2025-10-01", "2025-09-01", "2026-03-01"],
        }
    )
    as_of = dt.date(2025, 12, 31)
    out = claims_ratio(policies, claims, as_of).set_index(["insurer", "product_id"])
    earned = earned_premium(policies, as_of)
    assert out.loc[("sinosure", "steci"), "earned_premium_usd"] == pytest.approx(earned[:2].sum())
    assert out.loc[("sinosure", "steci"), "paid_usd"] == 1200.0  # the 2026 payment is later
    assert out.loc[("sinosure", "steci"), "claims_ratio"] == pytest.approx(
        1200.0 / earned[:2].sum()
    )
    assert (
        out.loc[("pingan", "steci"), "paid_usd"] == 0.0
        and out.loc[("pingan", "steci"), "claims"] == 0
    )
    assert 0 < earned[1] < 2400.0 and earned[0] == pytest.approx(1200.0 * 364 / 365)
