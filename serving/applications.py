"""Storing applications: create and freeze, act on them, record outcomes, read them back.

The domain rules (state machine, terms, notices, outcome contract, labels, statistics) live in
``tradefinance``; this module turns them into rows of ``serving.models`` and back. Routers, the
demo and the ``kuaxin outcomes`` command share it. Functions take an open session and leave
committing to the caller (routers commit through the audit write).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from features.values import plain
from serving.auth import Principal
from serving.consent import grant, revoke, state_of
from serving.market import Market, as_utc, firm_row, grades_of, product_versions
from serving.models import Application, ApplicationEvent, Consent, OutcomeQuarantine, OutcomeRecord
from serving.problems import FieldError, ProblemError
from serving.state import Loaded
from tradefinance.applications import (
    ACTOR,
    ApplicationsConfig,
    Status,
    TransitionError,
    allowed_actions,
    canonical,
    digest,
    freeze,
    next_status,
)
from tradefinance.matching import Need, match
from tradefinance.outcomes import AppState, OutcomeReport, apply_outcomes, outcome_table
from tradefinance.product_versions import latest, owner
from tradefinance.products import Product, ProductCatalog


class ApplyError(ValueError):
    """An application that cannot be made (``field`` names the request field)."""

    def __init__(self, field: str, message: str, expected: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.expected = field, message, expected


def now_utc() -> datetime:
    """Return the current time, aware UTC (every stored time is)."""
    return datetime.now(UTC)


def config_for(settings: Any) -> ApplicationsConfig:
    """Return the applications configuration of the app (``KUAXIN_APPLICATIONS`` or the shipped file)."""
    from tradefinance.applications import load_config

    path = getattr(settings, "applications", None)
    return load_config(None if path is None else str(path))


def product_owner(
    session: Session, market: Market, product_id: str, cfg: ApplicationsConfig
) -> str | None:
    """Return the institution owning a product (stored versions first, then the seed map)."""
    from tradefinance.applications import owner_of

    seed = market.products[product_id] if product_id in market.products else None  # noqa: SIM401
    return owner(
        product_id, None if seed is None else owner_of(seed, cfg.owners), product_versions(session)
    )


# ---------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------


def _entry_for(result: Any, product: Product) -> dict[str, Any]:
    entries = result.insurance if product.is_insurance else result.financing
    return next(e for e in entries if e["product_id"] == product.id)


def _event(
    session: Session,
    app: Application,
    action: str,
    before: str | None,
    principal: Principal | None,
    at: datetime,
    details: Mapping[str, Any] | None = None,
) -> None:
    session.add(
        ApplicationEvent(
            application_id=app.id,
            ts=at,
            action=action,
            from_status=before,
            to_status=app.status,
            key_id=None if principal is None else principal.key_id,
            role="system" if principal is None else principal.role,
            org="" if principal is None else principal.org,
            details=None if details is None else canonical(details),
        )
    )


def _frozen_record(
    loaded: Loaded,
    market: Market,
    catalog: ProductCatalog,
    product: Product,
    usc_code: str,
    need: Need,
    app: Application,
    effective_from: datetime | None,
) -> dict[str, Any]:
    """Match the firm now and freeze what the provider of ``product`` will see."""
    result = match(
        firm_row(loaded, usc_code),
        need,
        catalog,
        grades=grades_of(loaded),
        pricing=market.pricing,
        countries=market.countries,
        actionable=set(loaded.catalog.actionable) if loaded.catalog is not None else None,
    )
    i = loaded.position[usc_code]
    return freeze(
        application_id=app.id,
        frozen_at=app.created_at,
        product=product,
        product_version=app.product_version,
        product_effective_from=effective_from,
        need=need.model_dump(),
        score=loaded.score_payload(usc_code),
        explanation=loaded.explanation_payload(usc_code)["contributions"],
        match_entry=_entry_for(result, product),
        bundles=[b for b in result.bundles if b["financing_id"] == product.id],
        features={n: plain(loaded.snapshot[n].iat[i]) for n in loaded.model.feature_names},
        catalog_version=catalog.version,
        snapshot_source=loaded.snapshot_source,
    )


def create_application(
    session: Session,
    *,
    loaded: Loaded,
    market: Market,
    catalog: ProductCatalog,
    cfg: ApplicationsConfig,
    principal: Principal | None,
    usc_code: str,
    product_id: str,
    need: Need,
    need_ref: str | None = None,
    at: datetime | None = None,
) -> Application:
    """Create an application, grant the provider's consent and freeze what it will see.

    Parameters
    ----------
    session : Session
        Open session (the caller commits).
    loaded : Loaded
        The bundle being served (score, reasons, features at this moment).
    market : Market
        Pricing and country table.
    catalog : ProductCatalog
        The catalog in force (see :func:`serving.market.effective_products`).
    cfg : ApplicationsConfig
    principal : Principal or None
        The firm's key (None: created by the demo or CLI).
    usc_code, product_id : str
    need : Need
    need_ref : str, optional
        Groups the applications one posted need created.
    at : datetime, optional
        Time of the application (now).

    Returns
    -------
    Application
        Flushed (with its id), status ``submitted``, its consent granted.

    Raises
    ------
    ApplyError
        Unknown product, or a product without an owner.
    """
    at = at or now_utc()
    if product_id not in catalog:
        raise ApplyError(
            "body.product_id", f"unknown product {product_id!r}", "a product of GET /v1/products"
        )
    product = catalog[product_id]
    provider = product_owner(session, market, product_id, cfg)
    if provider is None:
        raise ApplyError(
            "body.product_id",
            f"product {product_id!r} has no owner",
            "a product of GET /v1/products",
        )
    version = latest(product_versions(session), product_id, at)
    app = Application(
        firm_usc=usc_code,
        provider_org=provider,
        product_id=product_id,
        product_version=0 if version is None else version.version,
        product_kind=product.kind,
        need_ref=need_ref,
        status=Status.submitted.value,
        grade=str(loaded.scores["grade"].iat[loaded.position[usc_code]]),
        qualified_via_bundle=False,
        amount_cny=float(need.amount_cny),
        model_version=loaded.model_version,
        frozen="{}",
        frozen_sha256="",
        created_at=at,
        updated_at=at,
    )
    session.add(app)
    session.flush()
    consent = grant(
        session,
        usc_code,
        provider,
        list(cfg.consent.scopes),
        f"application {app.id}",
        max(at, now_utc()) + timedelta(days=cfg.consent.days),
        granted_by=None if principal is None else principal.key_id,
    )
    effective = None if version is None else version.effective_from
    frozen = _frozen_record(loaded, market, catalog, product, usc_code, need, app, effective)
    app.frozen = canonical(frozen)
    app.frozen_sha256 = digest(app.frozen)
    app.qualified_via_bundle = bool(frozen["qualified_via_bundle"])
    app.consent_id = consent.id
    _event(session, app, "apply", None, principal, at, {"need": need.model_dump()})
    return app


def eligible_products(
    loaded: Loaded, market: Market, catalog: ProductCatalog, usc_code: str, need: Need
) -> list[str]:
    """Financing products (and, when insurance is wanted, insurance products) the firm is eligible for."""
    result = match(
        firm_row(loaded, usc_code),
        need,
        catalog,
        grades=grades_of(loaded),
        pricing=market.pricing,
        countries=market.countries,
    )
    ids = [e["product_id"] for e in result.financing if e["eligible"]]
    if need.insurance_wanted:
        ids += [e["product_id"] for e in result.insurance if e["eligible"]]
    return ids


def new_need_ref() -> str:
    """Return a new reference grouping the applications of one posted need."""
    return f"need-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# Acting on an application
# ---------------------------------------------------------------------------------------------


def act(
    session: Session,
    app: Application,
    action: str,
    principal: Principal | None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Application:
    """Move an application by ``action`` and record the step.

    Raises
    ------
    tradefinance.applications.TransitionError
        The state does not allow it.
    """
    at = at or now_utc()
    before = app.status
    app.status = next_status(before, action).value
    app.updated_at = at
    if action in ("approve", "approve_with_conditions", "decline") and app.decided_at is None:
        app.decided_at = at
    if action == "withdraw" and app.consent_id is not None:
        revoke(session, app.consent_id)
    _event(session, app, action, before, principal, at, details)
    return app


def consent_state(session: Session, app: Application) -> str:
    """State of the application's consent now (``active``, ``expired``, ``revoked``)."""
    consent = None if app.consent_id is None else session.get(Consent, app.consent_id)
    return "revoked" if consent is None else state_of(consent).value


def events_of(session: Session, app_id: int) -> list[dict[str, Any]]:
    """Return the application's steps, oldest first."""
    rows = session.scalars(
        sa.select(ApplicationEvent)
        .where(ApplicationEvent.application_id == app_id)
        .order_by(ApplicationEvent.id)
    )
    return [
        {
            "ts": as_utc(e.ts),
            "action": e.action,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "role": e.role,
            "org": e.org,
            "details": None if e.details is None else json.loads(e.details),
        }
        for e in rows
    ]


def summary(app: Application) -> dict[str, Any]:
    """Return what a list shows of an application (no score data)."""
    frozen = json.loads(app.frozen)
    product = frozen.get("product", {})
    return {
        "id": app.id,
        "firm_usc": app.firm_usc,
        "firm_name": frozen.get("score", {}).get("name"),
        "provider_org": app.provider_org,
        "product_id": app.product_id,
        "product_version": app.product_version,
        "product_name_en": product.get("name_en"),
        "product_name_zh": product.get("name_zh"),
        "product_kind": app.product_kind,
        "need_ref": app.need_ref,
        "amount_cny": app.amount_cny,
        "tenor_months": frozen.get("need", {}).get("tenor_months"),
        "purpose": frozen.get("need", {}).get("purpose"),
        "status": app.status,
        "created_at": as_utc(app.created_at),
        "updated_at": as_utc(app.updated_at),
        "decided_at": None if app.decided_at is None else as_utc(app.decided_at),
    }


def detail(session: Session, app: Application, actor: str) -> dict[str, Any]:
    """Return the full view of an application for ``actor`` (``firm`` or ``provider``)."""
    return {
        **summary(app),
        "frozen": json.loads(app.frozen),
        "frozen_sha256": app.frozen_sha256,
        "decision": None if app.decision is None else json.loads(app.decision),
        "events": events_of(session, app.id),
        "allowed_actions": allowed_actions(app.status, actor),
        "consent_id": app.consent_id,
        "consent_state": consent_state(session, app),
        "approved_amount_cny": app.approved_amount_cny,
        "disbursed_amount_cny": app.disbursed_amount_cny,
        "disbursed_on": app.disbursed_on,
        "outcomes": [
            {
                "event": r.event,
                "date": r.on_date,
                "amount_cny": r.amount_cny,
                "days_past_due": r.days_past_due,
                "status": r.status,
                "outstanding_cny": r.outstanding_cny,
            }
            for r in outcome_rows(session, [app.id]).get(app.id, [])
        ],
    }


def actor_of(action: str) -> str:
    """Who takes ``action`` (``firm`` or ``provider``)."""
    from tradefinance.applications import Action

    return ACTOR[Action(action)]


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


def outcome_rows(session: Session, app_ids: Sequence[int]) -> dict[int, list[OutcomeRecord]]:
    """Outcome records of some applications, oldest first."""
    out: dict[int, list[OutcomeRecord]] = {}
    for start in range(0, len(app_ids), 900):
        rows = session.scalars(
            sa.select(OutcomeRecord)
            .where(OutcomeRecord.application_id.in_(list(app_ids[start : start + 900])))
            .order_by(OutcomeRecord.on_date, OutcomeRecord.id)
        )
        for r in rows:
            out.setdefault(r.application_id, []).append(r)
    return out


def _app_state(app: Application) -> AppState:
    return AppState(
        status=Status(app.status),
        applied_on=as_utc(app.created_at).date(),
        approved_amount_cny=app.approved_amount_cny,
        disbursed_on=app.disbursed_on,
    )


@dataclass
class UploadResult:
    """What an outcome upload did."""

    upload_id: str
    report: OutcomeReport


def record_outcomes(
    session: Session,
    provider_org: str,
    raw_rows: Sequence[Mapping[str, Any]],
    cfg: ApplicationsConfig,
    principal: Principal | None,
    today: date | None = None,
    quarantine: bool = True,
) -> UploadResult:
    """Check and store a provider's outcome rows; failing rows go to the quarantine table.

    Parameters
    ----------
    session : Session
        Open session (the caller commits).
    provider_org : str
        Only this provider's applications can be named.
    raw_rows : sequence of mapping
        Rows as read from a CSV file (or one row from the API).
    cfg : ApplicationsConfig
    principal : Principal or None
    today : date, optional
        No outcome may be dated later (default: today, UTC).
    quarantine : bool
        Store failing rows (uploads) or not (single API records, answered with 422/409).

    Returns
    -------
    UploadResult
    """
    at = now_utc()
    upload_id = f"up-{uuid.uuid4().hex[:12]}"
    ids = []
    for r in raw_rows:
        try:
            ids.append(int(float(r.get("application_id") or 0)))
        except (TypeError, ValueError):
            continue
    apps = (
        {
            a.id: a
            for a in session.scalars(
                sa.select(Application).where(
                    Application.id.in_(ids), Application.provider_org == provider_org
                )
            )
        }
        if ids
        else {}
    )
    states = {i: _app_state(a) for i, a in apps.items()}
    report = apply_outcomes(raw_rows, states, cfg, today or at.date())
    for row in report.accepted:
        app = apps[row["application_id"]]
        session.add(
            OutcomeRecord(
                application_id=app.id,
                event=row["event"],
                on_date=row["date"],
                amount_cny=row["amount_cny"],
                days_past_due=row["days_past_due"],
                status=row["status"],
                outstanding_cny=row["outstanding_cny"],
                upload_id=upload_id if quarantine else None,
                recorded_at=at,
            )
        )
        if row["event"] == "disbursement":
            app.disbursed_on = row["date"]
            app.disbursed_amount_cny = row["amount_cny"]
        if row["action"] is not None:
            act(
                session,
                app,
                row["action"],
                principal,
                {"date": row["date"], "source": "outcome"},
                at,
            )
        else:
            app.updated_at = at
    if quarantine:
        for q in report.quarantined:
            raw = {k: v for k, v in q.items() if not k.startswith("_")}
            session.add(
                OutcomeQuarantine(
                    provider_org=provider_org,
                    upload_id=upload_id,
                    row_number=int(q["_row"]),
                    raw=canonical(raw),
                    reason=q["_reason"],
                    recorded_at=at,
                )
            )
    return UploadResult(upload_id, report)


def export_outcomes(
    session: Session, provider_org: str, cfg: ApplicationsConfig, observed_until: date | None = None
) -> tuple[Any, dict[str, int]]:
    """Return the provider's labelled table (frozen features + ``default_12m``) and counts."""
    apps = list(
        session.scalars(
            sa.select(Application)
            .where(Application.provider_org == provider_org)
            .order_by(Application.id)
        )
    )
    records = outcome_rows(session, [a.id for a in apps])
    items = [
        {
            "application_id": a.id,
            "features": json.loads(a.frozen).get("features", {}),
            "disbursed_on": a.disbursed_on,
            "records": [
                (r.on_date, int(r.days_past_due or 0), str(r.status or ""))
                for r in records.get(a.id, [])
                if r.event == "repayment"
            ],
        }
        for a in apps
    ]
    return outcome_table(items, cfg, observed_until or now_utc().date())


def statistics_rows(session: Session) -> list[dict[str, Any]]:
    """One plain row per application for :func:`tradefinance.application_stats.application_statistics`."""
    return [
        {
            "status": a.status,
            "grade": a.grade,
            "product_kind": a.product_kind,
            "created_at": as_utc(a.created_at),
            "decided_at": None if a.decided_at is None else as_utc(a.decided_at),
            "approved_amount_cny": a.approved_amount_cny,
            "disbursed_amount_cny": a.disbursed_amount_cny,
            "qualified_via_bundle": a.qualified_via_bundle,
        }
        for a in session.scalars(sa.select(Application))
    ]


def conflict(exc: TransitionError, actor: str) -> ProblemError:
    """409 for an action the state does not allow, naming the actions that are."""
    allowed = [a for a in exc.allowed if a in allowed_actions(exc.state, actor)]
    shown = ", ".join(allowed) if allowed else "none"
    return ProblemError(
        409,
        f"cannot {exc.action.value} an application that is {exc.state.value}; allowed now: {shown}",
        kind="illegal-transition",
        errors=[
            FieldError(
                field="action",
                message=f"{exc.action.value} is not allowed in state {exc.state.value}",
                expected=shown,
            )
        ],
    )
