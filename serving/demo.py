"""Demo keys for ``make run``: a bank, an insurer, an enterprise that consents to both, a
regulator and an admin, with ready-to-paste curl lines.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from features.uscc import validate as validate_uscc
from serving.auth import create_key, revoke_key
from serving.consent import grant
from serving.db import Database
from serving.models import ApiKey

logger = logging.getLogger(__name__)

#: What the demo firm grants (scopes and purpose) and for how long.
DEMO_CONSENTS = {
    "bank": (["score", "explanation", "quote"], "working-capital loan review"),
    "insurer": (["score", "quote"], "short-term export credit insurance underwriting"),
}
DEMO_DAYS = 365
#: The grade the README's recourse example asks for.
DEMO_TARGET = "BBB"
#: The README's what-if example: a feature the demo firm must have (a firm without marketplace
#: stores has no refund rate, and the example would change nothing: ``before: null``).
DEMO_WHATIF = {"refund_rate_6m": 0.01}


def pick_firm(
    snapshot: pd.DataFrame,
    grades: pd.Series | None = None,
    target: str = DEMO_TARGET,
    order: list[str] | None = None,
) -> tuple[str, str | None]:
    """Choose the demo firm.

    With scored grades, the median-PD firm one grade below ``target`` (so the README's
    recourse line has something to do); otherwise the middle firm by code.

    Parameters
    ----------
    snapshot : DataFrame
        ``usc_code``, ``name`` and the features of :data:`DEMO_WHATIF` (firms lacking them
        are passed over when others have them).
    grades : Series, optional
        Grade of each firm (index ``usc_code``), from the served model.
    target : str
        The recourse target of the demo.
    order : list of str, optional
        Grades best first (the model's master scale).

    Returns
    -------
    tuple of (str, str or None)
        USCC and name.

    Raises
    ------
    ValueError
        No firm of the snapshot has a valid USCC.
    """
    valid = snapshot[[validate_uscc(c).valid for c in snapshot["usc_code"]]]
    if valid.empty:
        raise ValueError("the snapshot has no firm with a valid USCC")
    having = [f for f in DEMO_WHATIF if f in valid.columns]
    if having and valid[having].notna().all(axis=1).any():
        valid = valid[valid[having].notna().all(axis=1)]  # the what-if example has work to do
    if grades is not None and valid["usc_code"].isin(grades.index).any():
        valid = valid[valid["usc_code"].isin(grades.index)]  # only firms the model grades
    valid = valid.sort_values("usc_code")
    row = valid.iloc[len(valid) // 2]
    if grades is not None and order is not None and target in order:
        for grade in order[order.index(target) + 1 :]:
            codes = [c for c in valid["usc_code"] if grades.get(c) == grade]
            if codes:
                row = valid.set_index("usc_code", drop=False).loc[codes[len(codes) // 2]]
                break
    name = row.get("name")
    return str(row["usc_code"]), (None if pd.isna(name) else str(name))


def served_grades(snapshot_path: Path, settings: Any) -> tuple[pd.Series | None, list[str] | None]:
    """Grades of the snapshot's firms by the model the service will load (None if it cannot)."""
    from serving.state import default_flags, load_default_status, load_model

    try:
        model, _ = load_model(settings.model_dir, settings)
        frame = pd.read_parquet(snapshot_path)
        scores = model.score(frame, num_threads=0)
        in_default, _ = default_flags(frame, load_default_status(settings.default_status))
    except Exception as exc:  # the demo still works with any firm; only the choice is worse
        logger.warning("demo firm chosen without the model: %s", exc)
        return None, None
    # a firm in default answers what-if and recourse with 409: never the demo firm
    grades = pd.Series(scores["grade"].to_numpy(), index=frame["usc_code"])[~in_default]
    return grades, model.master_scale.grades


def curl_lines() -> list[str]:
    """List the demo's curl examples (they read the variables of the demo's .env file)."""
    h = "-H 'Content-Type: application/json'"
    return [
        'curl -s -H "X-API-Key: $KX_BANK_KEY" $KX_URL/v1/firms/$KX_FIRM/score',
        'curl -s -H "X-API-Key: $KX_BANK_KEY" $KX_URL/v1/firms/$KX_FIRM/explanation',
        f'curl -s -X POST -H "X-API-Key: $KX_BANK_KEY" {h} -d "{{\\"usc_codes\\": [\\"$KX_FIRM\\"]}}" $KX_URL/v1/scores/batch',
        f"curl -s -X POST -H \"X-API-Key: $KX_ENTERPRISE_KEY\" {h} -d '{json.dumps({'changes': DEMO_WHATIF})}' $KX_URL/v1/firms/$KX_FIRM/what-if",
        f'curl -s -X POST -H "X-API-Key: $KX_ENTERPRISE_KEY" {h} -d \'{{"target_grade": "{DEMO_TARGET}"}}\' $KX_URL/v1/firms/$KX_FIRM/recourse',
        'curl -s -H "X-API-Key: $KX_ENTERPRISE_KEY" $KX_URL/v1/firms/$KX_FIRM/access-log',
        'curl -s -H "X-API-Key: $KX_ENTERPRISE_KEY" $KX_URL/v1/firms/$KX_FIRM/consents',
        "curl -s -o /dev/null -w '%{http_code}\\n' -H \"X-API-Key: $KX_REGULATOR_KEY\" $KX_URL/v1/firms/$KX_FIRM/score",
        'curl -s -H "X-API-Key: $KX_ADMIN_KEY" $KX_URL/v1/admin/audit/verify',
        "curl -s $KX_URL/v1/ready",
    ]


def create_demo(
    database: Database,
    snapshot: Path,
    base_url: str,
    orgs: dict[str, str],
    settings: Any | None = None,
) -> dict[str, Any]:
    """Create the demo keys and consents (earlier demo keys of the same orgs are revoked).

    Parameters
    ----------
    database : Database
        Migrated service database.
    snapshot : Path
        Snapshot the service will serve (the demo firm is one of its firms).
    base_url : str
        Where the service listens (for the curl lines).
    orgs : dict
        Role -> institution name.
    settings : Settings, optional
        Where the service's model comes from; with it the demo firm is one whose grade is
        just below the recourse target (otherwise the middle firm by code).

    Returns
    -------
    dict
        ``firm``, ``keys`` (role -> key, org, id), ``consents``, ``env`` (shell variables) and
        ``curl`` lines.

    Raises
    ------
    ValueError
        The snapshot is missing or has no usable firm.
    """
    if not snapshot.is_file():
        raise ValueError(f"snapshot {snapshot} does not exist; run `make features` first")
    frame = pd.read_parquet(snapshot)[["usc_code", "name", *DEMO_WHATIF]]
    grades, order = served_grades(snapshot, settings) if settings is not None else (None, None)
    usc, name = pick_firm(frame, grades, DEMO_TARGET, order)
    keys: dict[str, dict[str, Any]] = {}
    consents = []
    with database.session() as session:
        stale = session.scalars(
            sa.select(ApiKey).where(
                ApiKey.org.in_(list(orgs.values())), ApiKey.revoked_at.is_(None)
            )
        )
        for row in list(stale):
            revoke_key(session, row.id)
        for role, org in orgs.items():
            key, row = create_key(session, role, org, usc if role == "enterprise" else None)
            keys[role] = {"key": key, "org": org, "id": row.id}
        expires = datetime.now(UTC) + timedelta(days=DEMO_DAYS)
        for role, (scopes, purpose) in DEMO_CONSENTS.items():
            c = grant(session, usc, orgs[role], scopes, purpose, expires)
            consents.append(
                {
                    "id": c.id,
                    "institution": orgs[role],
                    "scopes": scopes,
                    "purpose": purpose,
                    "expires_at": expires.isoformat(),
                }
            )
    env = {"KX_URL": base_url.rstrip("/"), "KX_FIRM": usc}
    env.update({f"KX_{role.upper()}_KEY": k["key"] for role, k in keys.items()})
    return {
        "base_url": base_url,
        "firm": {"usc_code": usc, "name": name},
        "keys": keys,
        "consents": consents,
        "env": env,
        "curl": curl_lines(),
    }


# ---------------------------------------------------------------------------------------------
# Applications in several states, so the firm's page, the console and the statistics have content
# ---------------------------------------------------------------------------------------------

#: Products the demo institutions publish through the provider-products path (copies of seed
#: products under their own ids): (role, new id, seed id, English name, Chinese name).
DEMO_PRODUCTS = [
    (
        "bank",
        "demo_bank_trade_loan",
        "pcb_cbec_credit_loan",
        "Demo Bank Trade Loan",
        "演示银行跨境贷",
    ),
    (
        "bank",
        "demo_bank_order_financing",
        "pcb_export_order_financing",
        "Demo Bank Order Financing",
        "演示银行订单融资",
    ),
    (
        "insurer",
        "demo_insurer_easy_cover",
        "sinosure_sme_easy_cover",
        "Demo Insurer Easy Cover",
        "演示信保易",
    ),
]
#: (product, amount CNY, purpose, steps after applying) for the demo firm, then for other firms.
DEMO_APPLICATIONS = [
    ("demo_bank_trade_loan", 300000, "working_capital", []),
    ("demo_bank_order_financing", 500000, "order_fulfilment", ["open", "request_info"]),
    ("demo_bank_trade_loan", 200000, "inventory", ["open", "decline"]),
    ("demo_bank_trade_loan", 400000, "working_capital", ["open", "approve", "disburse"]),
    ("demo_bank_trade_loan", 150000, "marketing", ["open"]),
    ("demo_bank_trade_loan", 250000, "working_capital", ["open", "approve"]),
    ("demo_insurer_easy_cover", 350000, "export_receivables", []),
]


def _demo_decision(action: str, frozen: dict[str, Any], cfg: Any) -> dict[str, Any]:
    from tradefinance.applications import adverse_action_notice, check_information, check_terms

    need = frozen["need"]
    if action == "approve":
        pricing = frozen["product"]["pricing"]
        price = frozen["match"].get("price") or {"rate": pricing["rate_max"]}
        rate = min(max(round(price["rate"], 4), pricing["rate_min"]), pricing["rate_max"])
        terms = {
            "amount_cny": need["amount_cny"],
            "rate": rate,
            "tenor_months": need["tenor_months"],
        }
        return {"action": action, "note": "", "terms": check_terms(frozen["product"], terms)}
    if action == "request_info":
        return {
            "action": action,
            "note": "",
            "information": check_information(["export_contracts"], cfg),
        }
    codes = [f"model:{r['code']}" for r in frozen["score"]["reasons"][:2]] or [
        "policy:outside_appetite"
    ]
    return {"action": action, "note": "", "notice": adverse_action_notice(frozen, codes, cfg)}


def applications_seeded(database: Database, orgs: dict[str, str]) -> bool:
    """Whether the demo bank already has applications (a re-run seeds nothing)."""
    from serving.models import Application

    with database.session() as session:
        found = session.scalar(
            sa.select(Application.id).where(Application.provider_org == orgs["bank"]).limit(1)
        )
    return found is not None


def seed_applications(
    database: Database, loaded: Any, market: Any, orgs: dict[str, str], firm: str, cfg: Any = None
) -> list[dict[str, Any]]:
    """Publish the demo institutions' products and seed applications in several states.

    Idempotent: nothing is added when the demo bank already has applications.

    Parameters
    ----------
    database : Database
    loaded : serving.state.Loaded
        The bundle the service will serve (the frozen records come from it).
    market : serving.market.Market
    orgs : dict
        Role -> institution (``bank`` and ``insurer`` own the demo products).
    firm : str
        The demo firm (its applications come first); other firms of the snapshot fill the rest.
    cfg : ApplicationsConfig, optional

    Returns
    -------
    list of dict
        ``id``, ``firm``, ``product_id``, ``status`` of each seeded application.
    """
    import json

    from serving.applications import act, create_application, now_utc
    from serving.market import effective_products
    from serving.models import ProductVersionRow
    from tradefinance.applications import canonical, load_config
    from tradefinance.matching import Need

    cfg = cfg or load_config()
    if applications_seeded(database, orgs):
        return []
    with database.session() as session:
        at = now_utc()
        for role, pid, seed, en, zh in DEMO_PRODUCTS:
            if session.scalar(
                sa.select(ProductVersionRow.id).where(ProductVersionRow.product_id == pid)
            ):
                continue
            spec = market.products[seed].model_dump(mode="json")
            spec.update(id=pid, name_en=en, name_zh=zh)
            spec["provider"] = {"name_en": orgs[role], "name_zh": zh[:4], "fictional": True}
            session.add(
                ProductVersionRow(
                    product_id=pid,
                    version=1,
                    owner_org=orgs[role],
                    spec=json.dumps(spec, ensure_ascii=False),
                    effective_from=at,
                    created_at=at,
                    created_by=None,
                )
            )
        session.flush()
        catalog = effective_products(session, market)
        others = [c for c in sorted(loaded.position) if c != firm and validate_uscc(c).valid]
        spread = others[:: max(1, len(others) // 8)][: len(DEMO_APPLICATIONS) - 3]
        firms = [firm, firm, firm, *spread]
        out = []
        for usc, (pid, amount, purpose, steps) in zip(firms, DEMO_APPLICATIONS, strict=False):
            need = Need(amount_cny=amount, purpose=purpose, tenor_months=6)
            app = create_application(
                session,
                loaded=loaded,
                market=market,
                catalog=catalog,
                cfg=cfg,
                principal=None,
                usc_code=usc,
                product_id=pid,
                need=need,
            )
            for step in steps:
                if step == "disburse":
                    app.disbursed_on, app.disbursed_amount_cny = at.date(), app.approved_amount_cny
                    act(session, app, "disburse", None, {"date": at.date(), "source": "demo"})
                    continue
                decision = (
                    None if step == "open" else _demo_decision(step, json.loads(app.frozen), cfg)
                )
                act(session, app, step, None, decision)
                if decision is not None:
                    app.decision = canonical(decision)
                    if "terms" in decision:
                        app.approved_amount_cny = decision["terms"]["amount_cny"]
            if steps and steps[-1] == "disburse":
                from serving.models import OutcomeRecord

                session.add(
                    OutcomeRecord(
                        application_id=app.id,
                        event="disbursement",
                        on_date=at.date(),
                        amount_cny=app.disbursed_amount_cny,
                        recorded_at=at,
                    )
                )
            out.append({"id": app.id, "firm": usc, "product_id": pid, "status": app.status})
    return out
