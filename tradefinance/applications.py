"""Applications for financing and cover: the state machine, frozen records and decisions.

A firm applies for one product (or posts a need that becomes one application per eligible
product). What the provider sees is **frozen** at that moment: the score, reasons, rule trace,
limit and price, with the model and catalog versions and the product version. The frozen record
is canonical JSON with a SHA-256, so it reads later exactly as it was, whatever the service
loads since.

Decisions move an application through :data:`TRANSITIONS`; approval terms are checked against
the ranges of the frozen product version, decline reasons against the frozen reasons and trace,
and a decline becomes an adverse-action notice in Chinese and English. No HTTP here: the service
stores rows and answers requests (``serving/applications.py``, ``serving/routers/``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.texts import LANGS, text
from features.values import plain
from tradefinance.products import Product

CONFIG_PATH = Path(__file__).parent / "config" / "applications.yaml"

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


class ConsentSpec(BaseModel):
    """The consent applying grants to the product's provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[str] = Field(min_length=1)
    days: int = Field(gt=0, le=3650)


class OutcomeSpec(BaseModel):
    """When a disbursed application counts as defaulted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dpd_days: int = Field(gt=0, le=3650)
    horizon_months: int = Field(gt=0, le=120)


class ApplicationsConfig(BaseModel):
    """``tradefinance/config/applications.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consent: ConsentSpec
    service_level_hours: float = Field(gt=0)
    outcome: OutcomeSpec
    owners: dict[str, str] = Field(default_factory=dict)
    conditions: list[str] = Field(min_length=1)
    information: list[str] = Field(min_length=1)
    decline_policy: list[str] = Field(min_length=1)


@lru_cache(maxsize=4)
def load_config(path: str | None = None) -> ApplicationsConfig:
    """Load and validate the applications configuration (the shipped file by default).

    Every condition, information and policy-decline code must have its zh/en text
    (``app_condition_<code>``, ``app_info_<code>``, ``app_decline_<code>``).

    Raises
    ------
    pydantic.ValidationError, KeyError
        A malformed file, or a code without text.
    """
    data = yaml.safe_load(Path(path or CONFIG_PATH).read_text(encoding="utf-8"))
    cfg = ApplicationsConfig.model_validate(data)
    for prefix, codes in (
        ("app_condition_", cfg.conditions),
        ("app_info_", cfg.information),
        ("app_decline_", cfg.decline_policy),
    ):
        for code in codes:
            text(prefix + code, "en")  # raises KeyError for a code without a text
    return cfg


def owner_of(product: Product, owners: Mapping[str, str]) -> str:
    """Return the institution (an API key's ``org``) owning a seed-catalog product."""
    return owners.get(product.provider.name_en, product.provider.name_en)


# ---------------------------------------------------------------------------------------------
# State machine
# ---------------------------------------------------------------------------------------------


class Status(StrEnum):
    """Where an application stands."""

    submitted = "submitted"
    under_review = "under_review"
    info_requested = "info_requested"
    approved = "approved"
    conditionally_approved = "conditionally_approved"
    declined = "declined"
    withdrawn = "withdrawn"
    disbursed = "disbursed"
    repaid = "repaid"
    defaulted = "defaulted"


class Action(StrEnum):
    """What someone does to an application."""

    open = "open"
    request_info = "request_info"
    respond = "respond"
    approve = "approve"
    approve_with_conditions = "approve_with_conditions"
    decline = "decline"
    withdraw = "withdraw"
    disburse = "disburse"
    repay = "repay"
    default = "default"


#: Who may take each action: the firm or the product's provider.
ACTOR: dict[Action, str] = {
    Action.open: "provider",
    Action.request_info: "provider",
    Action.respond: "firm",
    Action.approve: "provider",
    Action.approve_with_conditions: "provider",
    Action.decline: "provider",
    Action.withdraw: "firm",
    Action.disburse: "provider",
    Action.repay: "provider",
    Action.default: "provider",
}

S, A = Status, Action
#: (state, action) -> next state. Anything else is refused with the allowed actions.
TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (S.submitted, A.open): S.under_review,
    (S.submitted, A.withdraw): S.withdrawn,
    (S.under_review, A.request_info): S.info_requested,
    (S.under_review, A.approve): S.approved,
    (S.under_review, A.approve_with_conditions): S.conditionally_approved,
    (S.under_review, A.decline): S.declined,
    (S.under_review, A.withdraw): S.withdrawn,
    (S.info_requested, A.respond): S.under_review,
    (S.info_requested, A.decline): S.declined,
    (S.info_requested, A.withdraw): S.withdrawn,
    (S.approved, A.disburse): S.disbursed,
    (S.approved, A.withdraw): S.withdrawn,
    (S.conditionally_approved, A.disburse): S.disbursed,
    (S.conditionally_approved, A.withdraw): S.withdrawn,
    (S.disbursed, A.repay): S.repaid,
    (S.disbursed, A.default): S.defaulted,
}
#: States in which the provider has decided (approved, conditionally approved or declined).
DECIDED = frozenset({S.approved, S.conditionally_approved, S.declined})
APPROVED = frozenset({S.approved, S.conditionally_approved, S.disbursed, S.repaid, S.defaulted})
#: States that end the application (nothing more can happen).
FINAL = frozenset(s for s in Status if not any(k[0] == s for k in TRANSITIONS))


class TransitionError(ValueError):
    """An action that the application's state does not allow (HTTP 409)."""

    def __init__(self, state: Status, action: Action, allowed: list[str]) -> None:
        shown = ", ".join(allowed) if allowed else "none (the application is closed)"
        super().__init__(
            f"cannot {action.value} an application that is {state.value}; allowed: {shown}"
        )
        self.state, self.action, self.allowed = state, action, allowed


def allowed_actions(state: Status | str, actor: str | None = None) -> list[str]:
    """Actions allowed in ``state`` (optionally only those ``actor`` may take), in order."""
    st = Status(state)
    return [a.value for (s, a) in TRANSITIONS if s == st and (actor is None or ACTOR[a] == actor)]


def next_status(state: Status | str, action: Action | str) -> Status:
    """Return the state after ``action``.

    Raises
    ------
    TransitionError
        The action is not allowed in ``state`` (the error lists what is).
    """
    st, act = Status(state), Action(action)
    target = TRANSITIONS.get((st, act))
    if target is None:
        raise TransitionError(st, act, allowed_actions(st))
    return target


# ---------------------------------------------------------------------------------------------
# Frozen record
# ---------------------------------------------------------------------------------------------


def canonical(data: Any) -> str:
    """Canonical JSON of a frozen record (sorted keys, no spaces; NaN becomes null)."""
    return json.dumps(_jsonable(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(canonical_text: str) -> str:
    """SHA-256 of a canonical record."""
    return hashlib.sha256(canonical_text.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def freeze(
    *,
    application_id: int,
    frozen_at: datetime,
    product: Product,
    product_version: int,
    product_effective_from: datetime | None,
    need: Mapping[str, Any],
    score: Mapping[str, Any],
    explanation: Sequence[Mapping[str, Any]],
    match_entry: Mapping[str, Any],
    bundles: Sequence[Mapping[str, Any]],
    features: Mapping[str, Any],
    catalog_version: str,
    snapshot_source: str,
) -> dict[str, Any]:
    """Assemble what the provider sees of an application, as plain JSON values.

    Parameters
    ----------
    application_id : int
    frozen_at : datetime
        Aware UTC time of the application.
    product : Product
        The product version applied for (its ranges bind the decision).
    product_version : int
        0 for the shipped seed catalog, else the version number stored by the service.
    product_effective_from : datetime or None
    need : mapping
        The firm's request (amount, purpose, tenor, ...).
    score : mapping
        The served score answer (PD, score, grade, reasons, default reasons, model version,
        as-of).
    explanation : sequence of mapping
        Every contribution (feature, value, contribution).
    match_entry : mapping
        The product's entry of the match (trace, limit, price or quote, eligible, ...).
    bundles : sequence of mapping
        Bundles of the match that use this product.
    features : mapping
        The firm's model features at application time (the outcome table uses them).
    catalog_version, snapshot_source : str

    Returns
    -------
    dict
        JSON-ready; ``qualified_via_bundle`` is true when the product's own rules fail but a
        bundle with an assigned policy makes the firm eligible.
    """
    eligible = bool(match_entry.get("eligible"))
    via_bundle = (not eligible) and any(
        b.get("financing_id") == product.id and not b.get("eligible_unbundled") for b in bundles
    )
    record = {
        "application_id": application_id,
        "frozen_at": frozen_at,
        "model_version": str(score.get("model_version", "")),
        "as_of": score.get("as_of"),
        "snapshot_source": snapshot_source,
        "catalog_version": catalog_version,
        "product": {
            **product.summary(),
            "version": product_version,
            "effective_from": product_effective_from,
        },
        "need": dict(need),
        "score": dict(score),
        "explanation": [dict(c) for c in explanation],
        "match": dict(match_entry),
        "bundles": [dict(b) for b in bundles],
        "eligible": eligible,
        "qualified_via_bundle": via_bundle,
        "features": dict(features),
    }
    return json.loads(canonical(record))


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One invalid decision field (``field`` is a dotted path into the request body)."""

    field: str
    message: str
    expected: str | None = None


class DecisionError(ValueError):
    """A decision with invalid fields (HTTP 422 naming each field)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def _within(
    problems: list[Problem], field: str, value: Any, lo: float, hi: float, unit: str = ""
) -> None:
    if value is None:
        problems.append(Problem(field, "required", f"{lo:g} to {hi:g}{unit}"))
    elif not (lo <= float(value) <= hi):
        problems.append(
            Problem(field, f"{value:g} is outside the product's range", f"{lo:g} to {hi:g}{unit}")
        )


def check_terms(product: Mapping[str, Any], terms: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check approval terms against the ranges of the frozen product version.

    Financing: ``amount_cny``, ``rate`` and ``tenor_months`` within the product's amount, rate and
    tenor ranges. Insurance: ``cover`` up to ``cover_max``, ``credit_days`` up to
    ``max_credit_days`` and a positive ``limit_usd``; ``premium_rate`` in (0, 1) when given.

    Parameters
    ----------
    product : mapping
        The frozen product (``Product.summary()`` form).
    terms : mapping or None

    Returns
    -------
    dict
        The terms, as floats and ints.

    Raises
    ------
    DecisionError
        Naming every field outside its range (``body.terms.<field>``).
    """
    terms = dict(terms or {})
    problems: list[Problem] = []
    base = "body.terms"
    if product.get("insurance") is not None:
        spec = product["insurance"]
        allowed = {"cover", "credit_days", "limit_usd", "premium_rate"}
        _within(problems, f"{base}.cover", terms.get("cover"), 0.01, spec["cover_max"])
        _within(
            problems, f"{base}.credit_days", terms.get("credit_days"), 1, spec["max_credit_days"]
        )
        _within(problems, f"{base}.limit_usd", terms.get("limit_usd"), 1, 1e12, " USD")
        if terms.get("premium_rate") is not None:
            _within(problems, f"{base}.premium_rate", terms["premium_rate"], 1e-6, 0.999)
    else:
        allowed = {"amount_cny", "rate", "tenor_months"}
        amount, tenor, pricing = product["amount"], product["tenor"], product["pricing"]
        _within(
            problems,
            f"{base}.amount_cny",
            terms.get("amount_cny"),
            amount["min_cny"],
            amount["max_cny"],
            " CNY",
        )
        _within(
            problems, f"{base}.rate", terms.get("rate"), pricing["rate_min"], pricing["rate_max"]
        )
        _within(
            problems,
            f"{base}.tenor_months",
            terms.get("tenor_months"),
            tenor["min_months"],
            tenor["max_months"],
            " months",
        )
        tenor_bad = any(p.field == f"{base}.tenor_months" for p in problems)
        if (
            not tenor_bad
            and terms.get("tenor_months") is not None
            and float(terms["tenor_months"]) % 1
        ):
            problems.append(Problem(f"{base}.tenor_months", "must be whole months", "an integer"))
    for extra in sorted(set(terms) - allowed):
        problems.append(Problem(f"{base}.{extra}", "no such term", ", ".join(sorted(allowed))))
    if problems:
        raise DecisionError(problems)
    return {
        k: (int(v) if k in ("tenor_months", "credit_days") else float(v)) for k, v in terms.items()
    }


def check_conditions(
    conditions: Sequence[Mapping[str, Any]],
    product: Mapping[str, Any],
    insurance_ids: Sequence[str],
    cfg: ApplicationsConfig,
) -> list[dict[str, Any]]:
    """Check the conditions of a conditional approval.

    ``assign_credit_insurance`` needs a product that accepts an assigned policy and
    ``insurance_product_id`` naming an insurance product of the catalog.

    Raises
    ------
    DecisionError
        No condition, an unknown code, or an assignment the product does not accept.
    """
    problems: list[Problem] = []
    if not conditions:
        problems.append(
            Problem("body.conditions", "at least one condition", ", ".join(cfg.conditions))
        )
    out = []
    for i, cond in enumerate(conditions):
        code = cond.get("code")
        where = f"body.conditions.{i}"
        if code not in cfg.conditions:
            problems.append(
                Problem(f"{where}.code", f"unknown code {code!r}", ", ".join(cfg.conditions))
            )
            continue
        item = {"code": code, "note": str(cond.get("note") or "")}
        if code == "assign_credit_insurance":
            pid = cond.get("insurance_product_id")
            if not product.get("policy_assignment"):
                problems.append(
                    Problem(
                        f"{where}.code",
                        "this product does not accept an assigned policy",
                        "a product with policy_assignment",
                    )
                )
            elif pid not in insurance_ids:
                problems.append(
                    Problem(
                        f"{where}.insurance_product_id",
                        f"unknown insurance product {pid!r}",
                        ", ".join(insurance_ids),
                    )
                )
            item["insurance_product_id"] = pid
        out.append(item)
    if problems:
        raise DecisionError(problems)
    return out


def check_information(items: Sequence[str], cfg: ApplicationsConfig) -> list[str]:
    """Check what a request for information asks for (known codes, at least one)."""
    if not items:
        raise DecisionError(
            [Problem("body.information", "at least one item", ", ".join(cfg.information))]
        )
    bad = [
        Problem(f"body.information.{i}", f"unknown item {c!r}", ", ".join(cfg.information))
        for i, c in enumerate(items)
        if c not in cfg.information
    ]
    if bad:
        raise DecisionError(bad)
    return list(dict.fromkeys(items))


def reason_options(frozen: Mapping[str, Any], cfg: ApplicationsConfig) -> list[dict[str, Any]]:
    """Decline reasons a provider may cite for one application, with their zh/en texts.

    ``model:<code>`` for each frozen model reason (and ``default:<feature>`` for each in-default
    rule), ``rule:<field>`` for each failed rule of the frozen trace, ``policy:<code>`` for the
    configured policy reasons.
    """
    score = frozen.get("score", {})
    out: list[dict[str, Any]] = []
    for r in score.get("reasons", []):
        out.append({"code": f"model:{r['code']}", "en": r["text_en"], "zh": r["text_zh"]})
    for r in score.get("default_reasons", []):
        out.append(
            {
                "code": f"default:{r['feature']}",
                "en": r.get("text_en", r["feature"]),
                "zh": r.get("text_zh", r["feature"]),
            }
        )
    seen = set()
    for t in frozen.get("match", {}).get("trace", []):
        if t.get("pass") or t["field"] in seen:
            continue
        seen.add(t["field"])
        fields = {"rule": t["rule"], "actual": "—" if t.get("actual") is None else t["actual"]}
        out.append(
            {
                "code": f"rule:{t['field']}",
                **{lang: text("app_reason_rule", lang, **fields) for lang in LANGS},
            }
        )
    for code in cfg.decline_policy:
        out.append(
            {
                "code": f"policy:{code}",
                **{lang: text(f"app_decline_{code}", lang) for lang in LANGS},
            }
        )
    return out


def adverse_action_notice(
    frozen: Mapping[str, Any], codes: Sequence[str], cfg: ApplicationsConfig, note: str = ""
) -> dict[str, Any]:
    """Build the adverse-action notice of a decline from the cited reason codes.

    Parameters
    ----------
    frozen : mapping
        The frozen record (reasons and trace the codes must come from).
    codes : sequence of str
        Codes from :func:`reason_options`.
    cfg : ApplicationsConfig
    note : str
        Free text of the provider (shown as written).

    Returns
    -------
    dict
        ``reasons`` (code, zh, en), ``zh`` and ``en`` (the notice as text).

    Raises
    ------
    DecisionError
        No code, or a code that is not among the options (a model reason or rule the frozen
        record does not have).
    """
    options = {o["code"]: o for o in reason_options(frozen, cfg)}
    if not codes:
        raise DecisionError(
            [Problem("body.reasons", "at least one reason code", ", ".join(options))]
        )
    bad = [
        Problem(
            f"body.reasons.{i}", f"{c!r} is not a reason of this application", ", ".join(options)
        )
        for i, c in enumerate(codes)
        if c not in options
    ]
    if bad:
        raise DecisionError(bad)
    reasons = [options[c] for c in dict.fromkeys(codes)]
    product = frozen.get("product", {})
    notice: dict[str, Any] = {"reasons": reasons, "note": note}
    for lang in LANGS:
        head = text(
            "app_notice_head",
            lang,
            product=product.get(f"name_{lang}", product.get("id", "")),
            provider=product.get("provider", {}).get(f"name_{lang}", ""),
        )
        lines = [head, *[f"{i}. {r[lang]}" for i, r in enumerate(reasons, start=1)]]
        if note:
            lines.append(note)
        lines.append(text("app_notice_foot", lang))
        notice[lang] = "\n".join(lines)
    return notice
