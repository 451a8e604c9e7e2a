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
