"""Platform statistics of applications for the regulator: aggregates only, never a firm.

What measure 18's platforms publish about the financing they bring about: applications,
approvals, approval rate and amount by grade and product kind, time to a first decision, the
share decided within the service level, and the financing granted to firms that qualified only
through a measure-19 policy bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from tradefinance.applications import APPROVED, DECIDED, Status

#: States counted as "decided" for the approval rate (a first decision was taken).
_DECIDED_ONCE = frozenset({*DECIDED, Status.disbursed, Status.repaid, Status.defaulted})


def _group(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    decided = [r for r in rows if Status(r["status"]) in _DECIDED_ONCE]
    approved = [r for r in rows if Status(r["status"]) in APPROVED]
    return {
        "applications": len(rows),
        "decided": len(decided),
        "approvals": len(approved),
        "declines": sum(Status(r["status"]) == Status.declined for r in rows),
        "approval_rate": len(approved) / len(decided) if decided else None,
        "approved_amount_cny": float(sum(r.get("approved_amount_cny") or 0.0 for r in approved)),
        "disbursed_amount_cny": float(sum(r.get("disbursed_amount_cny") or 0.0 for r in rows)),
    }


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600.0


def application_statistics(
    rows: Sequence[Mapping[str, Any]],
    *,
    grades: Sequence[str],
    kinds: Sequence[str],
    service_level_hours: float,
    now: datetime,
) -> dict[str, Any]:
    """Aggregate applications.

    Parameters
    ----------
    rows : sequence of mapping
        One per application: ``status``, ``grade`` and ``product_kind`` (frozen),
        ``created_at`` and ``decided_at`` (aware UTC; None while undecided),
        ``approved_amount_cny``, ``disbursed_amount_cny``, ``qualified_via_bundle``.
    grades : sequence of str
        Grade order (best first) for ``by_grade``.
    kinds : sequence of str
        Product kinds, in order, for ``by_kind``.
    service_level_hours : float
        Hours within which a first decision is due.
    now : datetime
        For undecided applications already past the service level.

    Returns
    -------
    dict
        ``totals``, ``by_status``, ``by_grade``, ``by_kind`` (each a group of counts, rate and
        amounts), ``time_to_decision_hours`` (count, mean, median, p90), ``service_level``
        (hours, decided, within, share_within, pending_overdue) and ``bundle_only`` (the group of
        applications whose firm qualified only through a policy bundle).
    """
    waits = [
        _hours(r["created_at"], r["decided_at"]) for r in rows if r.get("decided_at") is not None
    ]
    arr = np.asarray(waits, dtype=float)
    within = int((arr <= service_level_hours).sum()) if arr.size else 0
    overdue = sum(
        r.get("decided_at") is None
        and Status(r["status"]) in (Status.submitted, Status.under_review, Status.info_requested)
        and _hours(r["created_at"], now) > service_level_hours
        for r in rows
    )
    statuses = {s.value: 0 for s in Status}
    for r in rows:
        statuses[Status(r["status"]).value] += 1
    return {
        "totals": _group(rows),
        "by_status": statuses,
        "by_grade": [
            {"grade": g, **_group([r for r in rows if r.get("grade") == g])}
            for g in grades
            if any(r.get("grade") == g for r in rows)
        ],
        "by_kind": [
            {"kind": k, **_group([r for r in rows if r.get("product_kind") == k])}
            for k in kinds
            if any(r.get("product_kind") == k for r in rows)
        ],
        "time_to_decision_hours": {
            "count": int(arr.size),
            "mean": float(arr.mean()) if arr.size else None,
            "median": float(np.median(arr)) if arr.size else None,
            "p90": float(np.quantile(arr, 0.9)) if arr.size else None,
        },
        "service_level": {
            "hours": service_level_hours,
            "decided": int(arr.size),
            "within": within,
            "share_within": within / arr.size if arr.size else None,
            "pending_overdue": int(overdue),
        },
        "bundle_only": _group([r for r in rows if r.get("qualified_via_bundle")]),
    }
