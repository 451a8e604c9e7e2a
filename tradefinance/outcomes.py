"""Outcomes of approved applications: disbursement and repayment records, and the labelled table.

Providers report outcomes one by one (API) or as a CSV file with the columns of
:data:`CONTRACT`. Each row is checked against the contract (types, allowed values, bounds) and
then against the application it names (it must be the provider's own, in a state that allows the
event, dated after the application or disbursement). Rows that fail are **quarantined** with all
their reasons, as ``features/ingest.py`` does for raw tables (``<column>: <kind>: expected ...,
got ...``); the rest are applied in file order. ``read == accepted + quarantined`` always holds.

:func:`label_of` says whether a disbursed application defaulted within the horizon (12 months by
default) and :func:`outcome_table` turns applications into the provider's labelled table: the
features frozen at application time plus ``default_12m``, which ``kuaxin train --table``
accepts unchanged.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from tradefinance.applications import ApplicationsConfig, Status, TransitionError, next_status

#: Column -> (type, required, allowed values or (min, max)). The upload contract.
CONTRACT: dict[str, tuple[str, bool, Any]] = {
    "application_id": ("int", True, (1, 2**62)),
    "event": ("category", True, ("disbursement", "repayment")),
    "date": ("date", True, None),
    "amount_cny": ("float", False, (0.0, 1e11)),
    "days_past_due": ("int", False, (0, 3650)),
    "status": ("category", False, ("current", "late", "repaid", "defaulted")),
    "outstanding_cny": ("float", False, (0.0, 1e11)),
}
#: The label column of the exported table and its row id.
LABEL = "default_12m"
ID_COLUMN = "application_id"


@dataclass
class AppState:
    """What outcome checks need to know about one application (updated as rows apply)."""

    status: Status
    applied_on: date
    approved_amount_cny: float | None
    disbursed_on: date | None = None


@dataclass
class OutcomeReport:
    """Result of applying outcome rows."""

    read: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """``read``, ``accepted``, ``quarantined`` counts and ``by_reason`` (``<column>: <kind>``)."""
        by_reason: Counter[str] = Counter()
        for q in self.quarantined:
            for reason in q["_reason"].split("; "):
                by_reason[":".join(reason.split(":")[:2])] += 1
        assert self.read == len(self.accepted) + len(self.quarantined)
        return {
            "read": self.read,
            "accepted": len(self.accepted),
            "quarantined": len(self.quarantined),
            "by_reason": dict(sorted(by_reason.items())),
        }


class OutcomeFileError(ValueError):
    """An upload that cannot be used at all (not CSV, a required column missing)."""


def read_csv(text: str) -> list[dict[str, str]]:
    """Parse an upload into raw rows (strings).

    Raises
    ------
    OutcomeFileError
        No header, or a required column of :data:`CONTRACT` missing.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c, (_, req, _) in CONTRACT.items() if req and c not in header]
    if not header or missing:
        raise OutcomeFileError(
            f"CSV header must name the columns {', '.join(CONTRACT)}; missing: {', '.join(missing) or 'all'}"
        )
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def _typed(column: str, raw: Any, reasons: list[str]) -> Any:
    kind, required, allowed = CONTRACT[column]
    if raw is None or (isinstance(raw, str) and raw == ""):
        if required:
            reasons.append(f"{column}: missing: expected a value")
        return None
    try:
        if kind == "int":
            f = float(raw)
            if not f.is_integer():
                raise ValueError
            value: Any = int(f)
        elif kind == "float":
            value = float(raw)
            if value != value:  # NaN
                raise ValueError
        elif kind == "date":
            value = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
        else:
            value = str(raw)
    except (TypeError, ValueError):
        expected = {"int": "an integer", "float": "a number", "date": "a date YYYY-MM-DD"}[kind]
        reasons.append(f"{column}: type: expected {expected}, got {raw}")
        return None
    if kind == "category" and value not in allowed:
        reasons.append(f"{column}: allowed: expected one of {', '.join(allowed)}, got {value}")
        return None
    if kind in ("int", "float") and allowed is not None:
        lo, hi = allowed
        if value < lo:
            reasons.append(f"{column}: range: expected >= {lo:g}, got {raw}")
            return None
        if value > hi:
            reasons.append(f"{column}: range: expected <= {hi:g}, got {raw}")
            return None
    return value


def check_row(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check one row against the contract: typed values and the reasons it fails."""
    reasons: list[str] = []
    row = {c: _typed(c, raw.get(c), reasons) for c in CONTRACT}
    if (
        row["event"] == "repayment"
        and row["status"] is None
        and "status: " not in " ".join(reasons)
    ):
        reasons.append("status: missing: expected a value for a repayment")
    if (
        row["event"] == "disbursement"
        and row["amount_cny"] is None
        and "amount_cny" not in " ".join(reasons)
    ):
        reasons.append("amount_cny: missing: expected a value for a disbursement")
    return row, reasons


def _event_action(row: Mapping[str, Any], cfg: ApplicationsConfig) -> str | None:
    """Return the state-machine action a row implies (None: a record that keeps the state)."""
    if row["event"] == "disbursement":
        return "disburse"
    dpd = row["days_past_due"] or 0
    if row["status"] == "defaulted" or dpd >= cfg.outcome.dpd_days:
        return "default"
    if row["status"] == "repaid":
        return "repay"
    return None


def _against_application(
    row: dict[str, Any], app: AppState | None, cfg: ApplicationsConfig, today: date
) -> tuple[list[str], str | None]:
    if app is None:
        return [
            f"application_id: reference: no application {row['application_id']} of this provider"
        ], None
    reasons = []
    if row["date"] > today:
        reasons.append(f"date: range: expected on or before {today.isoformat()}, got {row['date']}")
    action = _event_action(row, cfg)
    if row["event"] == "disbursement":
        if row["date"] < app.applied_on:
            reasons.append(
                f"date: range: expected on or after the application date {app.applied_on}, got {row['date']}"
            )
        cap = app.approved_amount_cny
        if cap is not None and row["amount_cny"] is not None and row["amount_cny"] > cap:
            reasons.append(
                f"amount_cny: range: expected <= the approved {cap:g}, got {row['amount_cny']:g}"
            )
    elif app.disbursed_on is not None and row["date"] < app.disbursed_on:
        reasons.append(
            f"date: range: expected on or after the disbursement {app.disbursed_on}, got {row['date']}"
        )
    if row["event"] == "disbursement":
        try:
            next_status(app.status, "disburse")
        except TransitionError as exc:
            reasons.append(f"event: state: {exc}")
    elif app.status != Status.disbursed:
        reasons.append(
            f"event: state: a repayment record needs a disbursed application; it is {app.status.value}"
        )
    return reasons, action


def apply_outcomes(
    raw_rows: Iterable[Mapping[str, Any]],
    apps: Mapping[int, AppState],
    cfg: ApplicationsConfig,
    today: date,
) -> OutcomeReport:
    """Check outcome rows and apply the good ones in order.

    Parameters
    ----------
    raw_rows : iterable of mapping
        Rows as read (strings) or typed.
    apps : mapping of int to AppState
        The provider's own applications (changed in place as rows apply).
    cfg : ApplicationsConfig
    today : date
        No outcome may be dated later.

    Returns
    -------
    OutcomeReport
        ``accepted`` rows carry ``_row`` (0-based), ``action`` (``disburse``, ``repay``,
        ``default`` or None) and ``status_after``; quarantined rows are the raw values plus
        ``_row`` and ``_reason`` (all reasons ``"; "``-joined).
    """
    report = OutcomeReport()
    seen: set[tuple[Any, ...]] = set()
    for i, raw in enumerate(raw_rows):
        report.read += 1
        row, reasons = check_row(raw)
        action = None
        if not reasons:
            key = (row["application_id"], row["event"], row["date"])
            if key in seen:
                reasons.append("duplicate: key (application_id, event, date)")
            else:
                more, action = _against_application(
                    row, apps.get(row["application_id"]), cfg, today
                )
                reasons += more
        if reasons:
            report.quarantined.append(
                {
                    **{k: ("" if v is None else str(v)) for k, v in raw.items()},
                    "_row": i,
                    "_reason": "; ".join(reasons),
                }
            )
            continue
        seen.add((row["application_id"], row["event"], row["date"]))
        app = apps[row["application_id"]]
        if action is not None:
            app.status = next_status(app.status, action)
        if row["event"] == "disbursement":
            app.disbursed_on = row["date"]
        report.accepted.append(
            {**row, "_row": i, "action": action, "status_after": app.status.value}
        )
    return report


def _add_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year, month = d.year + month // 12, month % 12 + 1
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ]
    return date(year, month, min(d.day, days[month - 1]))


def label_of(
    disbursed_on: date,
    records: Sequence[tuple[date, int, str]],
    cfg: ApplicationsConfig,
    observed_until: date,
) -> int | None:
    """Whether a disbursed application defaulted within the horizon.

    Parameters
    ----------
    disbursed_on : date
    records : sequence of (date, days_past_due, status)
        Its repayment records.
    cfg : ApplicationsConfig
        ``outcome.dpd_days`` and ``outcome.horizon_months``.
    observed_until : date
        Last day outcomes are known for (the export's cut-off).

    Returns
    -------
    int or None
        1 when a record in (disbursed_on, disbursed_on + horizon] is ``defaulted`` or at least
        ``dpd_days`` past due; 0 when the horizon has passed (or the loan was repaid) without
        one; None when it is still open (censored: not in the table).
    """
    end = _add_months(disbursed_on, cfg.outcome.horizon_months)
    window = [r for r in records if disbursed_on < r[0] <= end]
    if any(status == "defaulted" or dpd >= cfg.outcome.dpd_days for _, dpd, status in window):
        return 1
    if observed_until >= end or any(status == "repaid" for _, _, status in window):
        return 0
    return None


def outcome_table(
    applications: Sequence[Mapping[str, Any]], cfg: ApplicationsConfig, observed_until: date
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Build a provider's labelled table.

    Parameters
    ----------
    applications : sequence of mapping
        Each with ``application_id``, ``features`` (frozen at application time),
        ``disbursed_on`` (date or None) and ``records`` (see :func:`label_of`).
    cfg : ApplicationsConfig
    observed_until : date

    Returns
    -------
    tuple of (DataFrame, dict)
        Columns ``application_id``, the features (in the first application's order, then any
        others), ``default_12m``; and counts ``applications``, ``not_disbursed``, ``censored``,
        ``rows``, ``defaults``.
    """
    rows, counts = [], Counter(applications=len(applications))
    for app in applications:
        if app.get("disbursed_on") is None:
            counts["not_disbursed"] += 1
            continue
        y = label_of(app["disbursed_on"], app.get("records", []), cfg, observed_until)
        if y is None:
            counts["censored"] += 1
            continue
        rows.append({ID_COLUMN: app["application_id"], **app["features"], LABEL: y})
        counts["defaults"] += y
    columns: list[str] = [ID_COLUMN]
    for r in rows:
        columns += [c for c in r if c not in columns and c != LABEL]
    frame = (
        pd.DataFrame(rows, columns=[*columns, LABEL])
        if rows
        else pd.DataFrame(columns=[ID_COLUMN, LABEL])
    )
    counts["rows"] = len(frame)
    for key in ("not_disbursed", "censored", "defaults"):
        counts.setdefault(key, 0)
    return frame, dict(counts)
