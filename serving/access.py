"""The access table: for every endpoint, which role may call it, under which consent scope,
and which fields of the answer need a wider scope.

This table is the one place access is decided. ``serving.deps.enforce_access`` (an app-wide
dependency) refuses a role the endpoint's entry does not list (403) and an endpoint that has no
entry at all; ``serving.deps.require_firm_access`` checks the firm-level grant (consent scope or
own firm) the entry names; :func:`redact` blanks the fields whose scope the caller's consent
lacks. The README's access table is printed from it (``python -m serving.access``), and
``tests/serving/test_service_access.py`` walks every route of the app against it.

Grants (the value for a role):

* a consent scope (``score``, ``explanation``, ``quote``): a bank or insurer under an active
  consent of the firm with that scope;
* ``own``: an enterprise key, for its own firm only;
* ``yes``: the role may call the endpoint (no firm data, or aggregates, or administration);
* ``public``: no key needed (the entry lists no roles).

To add an endpoint, add one :class:`Access` entry to :data:`TABLE` (method and path as the
route declares it, with its ``/v1`` prefix).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Roles in table order.
ROLES = ("bank", "insurer", "enterprise", "regulator", "admin")
#: Consent scopes, narrowest first.
SCOPES = ("score", "explanation", "quote")
#: Grant values that are not scopes.
OWN, YES = "own", "yes"


@dataclass(frozen=True)
class Access:
    """Who may call one endpoint.

    Attributes
    ----------
    method : str
        HTTP method (``GET``, ``POST``, ...).
    path : str
        Route path as declared, e.g. ``/v1/firms/{usc_code}/score``; a trailing ``*`` covers
        every path below (public page trees only).
    roles : mapping of str to str
        Role -> grant (a consent scope, ``own`` or ``yes``); a role not listed is refused.
        Empty for a public endpoint.
    fields : mapping of str to str
        Answer field (dotted path; ``[]`` walks a list) -> the consent scope a bank or insurer
        needs to see it; without it the field is null. Enterprises see their own fields.
    audited : bool
        Whether each answer writes an audit row per firm before it leaves.
    note : str
        What the endpoint gives (for the README).
    """

    method: str
    path: str
    roles: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    audited: bool = False
    note: str = ""

    @property
    def key(self) -> str:
        """``METHOD /path`` of the entry."""
        return f"{self.method} {self.path}"

    @property
    def public(self) -> bool:
        """No key needed."""
        return not self.roles

    @property
    def firm_data(self) -> bool:
        """Whether the endpoint answers with one firm's data under a firm-level grant."""
        return any(g in SCOPES or g == OWN for g in self.roles.values())

    def grant(self, role: str) -> str | None:
        """Return the grant of ``role`` (None: refused)."""
        return self.roles.get(role)


def _consent(scope: str, own: bool = True, roles: Iterable[str] = ("bank", "insurer")) -> dict:
    grants = dict.fromkeys(roles, scope)
    if own:
        grants["enterprise"] = OWN
    return grants


_ANY_KEY = dict.fromkeys(ROLES, YES)
_OWNER = {"enterprise": OWN, "admin": YES}
_SUPERVISION = {"regulator": YES, "admin": YES}
_PROVIDER = {"bank": YES, "insurer": YES}
# The firm's raw feature values in rule traces, and model-based plans: the explanation scope.
_FIRM_VALUE = "trace[source=firm].actual"
_MATCH_FIELDS = {
    f"financing[].{_FIRM_VALUE}": "explanation",
    f"insurance[].{_FIRM_VALUE}": "explanation",
    f"insurance[].quote.{_FIRM_VALUE}": "explanation",
    f"bundles[].{_FIRM_VALUE}": "explanation",
    f"bundles[].premium_quote.{_FIRM_VALUE}": "explanation",
    "financing[].recourse": "explanation",
    "insurance[].recourse": "explanation",
}

#: Every endpoint of the service, one entry each.
TABLE: tuple[Access, ...] = (
    Access("GET", "/v1/health", note="liveness"),
    Access("GET", "/v1/ready", note="readiness; paths and the last reload error for admins only"),
    Access("GET", "/metrics", note="Prometheus metrics (fixed labels, no firm data)"),
    Access(
        "GET",
        "/v1/firms/{usc_code}/score",
        _consent("score"),
        audited=True,
        note="PD, score, grade, top reasons",
    ),
    Access(
        "POST",
        "/v1/scores/batch",
        _consent("score"),
        audited=True,
        note="scores of many firms; firms without the grant listed as errors",
    ),
    Access(
        "GET",
        "/v1/firms/{usc_code}/explanation",
        _consent("explanation"),
        audited=True,
        note="every SHAP contribution with the feature values",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/what-if",
        _consent("explanation"),
        audited=True,
        note="score with changed features",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/recourse",
        _consent("explanation"),
        audited=True,
        note="cheapest changes reaching a grade",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/matches",
        _consent("score", roles=("bank",)),
        fields=_MATCH_FIELDS,
        audited=True,
        note="products ranked for a need",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/loan-price",
        _consent("score", roles=("bank",)),
        audited=True,
        note="risk-based loan rate",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/quote",
        _consent("quote", roles=("insurer",)),
        fields={f"quote.{_FIRM_VALUE}": "explanation"},
        audited=True,
        note="export credit insurance quote with the exporter's grade",
    ),
    Access("GET", "/v1/products", _ANY_KEY, note="the product catalog"),
    Access("GET", "/v1/countries", _ANY_KEY, note="the OECD country-risk table"),
    Access("GET", "/v1/firms/{usc_code}/consents", _OWNER, note="the firm's consents"),
    Access("POST", "/v1/firms/{usc_code}/consents", _OWNER, note="grant a consent"),
    Access("DELETE", "/v1/firms/{usc_code}/consents/{consent_id}", _OWNER, note="revoke a consent"),
    Access("GET", "/v1/firms/{usc_code}/access-log", _OWNER, note="who read the firm's data"),
    Access(
        "GET",
        "/v1/consents",
        {"bank": YES, "insurer": YES},
        note="consents granted to the caller's institution",
    ),
    Access("GET", "/v1/regulator/overview", _SUPERVISION, note="aggregates only"),
    Access("GET", "/v1/regulator/measure19", _SUPERVISION, note="aggregates only"),
    Access("POST", "/v1/admin/reload", {"admin": YES}, note="swap model/snapshot"),
    Access("GET", "/v1/admin/audit/verify", {"admin": YES}, note="check the audit chain"),
    Access("GET", "/portal/api/whoami", _ANY_KEY, note="the caller's role and firm"),
    Access("GET", "/portal/api/features", _ANY_KEY, note="feature labels (no firm data)"),
    # Applications (serving/routers/applications.py, provider_*.py, application_stats.py):
    # the role is checked here, ownership of the application or product in the route (403).
    Access(
        "POST",
        "/v1/firms/{usc_code}/applications",
        _OWNER,
        audited=True,
        note="apply for a product (grants the provider an application consent)",
    ),
    Access(
        "GET",
        "/v1/firms/{usc_code}/applications",
        _OWNER,
        note="the firm's applications (no score data)",
    ),
    Access(
        "GET",
        "/v1/firms/{usc_code}/applications/{application_id}",
        _OWNER,
        audited=True,
        note="one application: frozen record, decision, notice",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/applications/{application_id}/withdraw",
        _OWNER,
        audited=True,
        note="withdraw (revokes the consent)",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/applications/{application_id}/respond",
        _OWNER,
        audited=True,
        note="reply to a request for information",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/needs",
        _OWNER,
        audited=True,
        note="post a need to every eligible provider",
    ),
    Access(
        "GET",
        "/v1/provider/applications",
        _PROVIDER,
        note="inbox: applications to the caller's products (no score data)",
    ),
    Access(
        "GET",
        "/v1/provider/applications/{application_id}",
        _PROVIDER,
        audited=True,
        note="frozen view; own products and active application consent only",
    ),
    Access(
        "POST",
        "/v1/provider/applications/{application_id}/decision",
        _PROVIDER,
        audited=True,
        note="approve, approve with conditions, request information, decline",
    ),
    Access(
        "POST",
        "/v1/provider/applications/{application_id}/disbursement",
        _PROVIDER,
        audited=True,
        note="record a disbursement",
    ),
    Access(
        "POST",
        "/v1/provider/applications/{application_id}/repayments",
        _PROVIDER,
        audited=True,
        note="record a repayment status",
    ),
    Access(
        "POST",
        "/v1/provider/outcomes",
        _PROVIDER,
        note="outcome CSV upload (quarantine with reasons)",
    ),
    Access(
        "GET",
        "/v1/provider/outcomes/quarantine",
        _PROVIDER,
        note="the caller's quarantined outcome rows",
    ),
    Access("GET", "/v1/provider/products", _PROVIDER, note="the caller's products in force"),
    Access(
        "POST", "/v1/provider/products", _PROVIDER, note="create a product (validated as the YAML)"
    ),
    Access(
        "PUT",
        "/v1/provider/products/{product_id}",
        _PROVIDER,
        note="a new version of an own product",
    ),
    Access("DELETE", "/v1/provider/products/{product_id}", _PROVIDER, note="retire an own product"),
    Access(
        "GET",
        "/v1/provider/products/{product_id}/versions",
        _PROVIDER,
        note="versions of an own product",
    ),
    Access(
        "GET",
        "/v1/regulator/applications",
        _SUPERVISION,
        note="application statistics, aggregates only",
    ),
    # The insurer's side (serving/routers/buyers.py, insurer.py, regulator.py): a buyer's grade
    # is the insurer's business data built from exporters' records, so firms and insurers see
    # grades and limits but never another exporter's records; per-firm actions need the firm's
    # quote consent (insurers) or its own key.
    Access(
        "POST",
        "/v1/firms/{usc_code}/buyer-limits",
        _consent("quote", roles=("insurer",)),
        audited=True,
        note="request a buyer credit limit for this exporter (granted, reduced or refused)",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/quote-plan",
        _consent("quote"),
        audited=True,
        note="quotes for a shipment plan (several buyers) with the exporter's grade",
    ),
    Access(
        "POST",
        "/v1/firms/{usc_code}/claims",
        _consent("quote", roles=("insurer",)),
        audited=True,
        note="notify a non-payment; the claim's assessment",
    ),
    Access(
        "GET",
        "/v1/buyers",
        {"insurer": YES, "admin": YES},
        note="platform buyers with grade and PD (no exporter records)",
    ),
    Access(
        "GET",
        "/v1/buyers/{buyer_id}",
        {"insurer": YES, "enterprise": YES, "admin": YES},
        note="one buyer's grade, reasons and limit; payment experience only in aggregate",
    ),
    Access("GET", "/v1/insurer/limits", {"insurer": YES, "admin": YES}, note="the caller's limits"),
    Access("GET", "/v1/insurer/claims", {"insurer": YES, "admin": YES}, note="the caller's claims"),
    Access(
        "GET",
        "/v1/insurer/book",
        {"insurer": YES, "admin": YES},
        note="the caller's book: exposure, loss distribution, VaR/ES, concentration",
    ),
    Access(
        "GET",
        "/v1/regulator/measure19/tail",
        _SUPERVISION,
        note="coverage against tail loss along a loosening path, aggregates only",
    ),
    Access(
        "GET",
        "/insurer-console/*",
        note="insurer console pages (data only through the API with a key)",
    ),
    Access("GET", "/docs", note="OpenAPI docs (Swagger UI, served offline)"),
    Access("GET", "/docs/oauth2-redirect", note="Swagger UI's OAuth2 redirect page"),
    Access("GET", "/redoc", note="OpenAPI docs (ReDoc, served offline)"),
    Access("GET", "/console", note="redirect to the provider console"),
    Access(
        "GET", "/console/*", note="provider console pages (data only through the API with a key)"
    ),
    Access("GET", "/", note="redirect to the portal"),
    Access("GET", "/portal", note="redirect to the portal"),
    Access("GET", "/portal/*", note="portal pages (data only through the API with a key)"),
    Access("POST", "/portal/", note="sign-in form without JavaScript: the page again, no key"),
)

_BY_KEY = {a.key: a for a in TABLE}
_PREFIXES = [a for a in TABLE if a.path.endswith("*")]


def rule_for(method: str, path: str) -> Access | None:
    """Return the entry for a route (``path`` as declared, e.g. ``/v1/firms/{usc_code}/score``)."""
    hit = _BY_KEY.get(f"{method} {path}")
    if hit is not None:
        return hit
    if method == "HEAD":
        return rule_for("GET", path)
    for entry in _PREFIXES:
        if entry.method == method and path.startswith(entry.path[:-1]):
            return entry
    return None


def hidden_fields(entry: Access, scopes: Iterable[str]) -> list[str]:
    """Fields of ``entry`` the caller may not see with consent ``scopes``."""
    have = set(scopes)
    return [f for f, scope in entry.fields.items() if scope not in have]


_SEGMENT = re.compile(r"^(?P<name>\w+)(?P<list>\[(?:(?P<key>\w+)=(?P<value>\w+))?\])?$")


def redact(payload: Any, paths: Iterable[str]) -> Any:
    """Set every field at the dotted ``paths`` to None, in place.

    ``name[]`` walks every item of a list, ``name[key=value]`` only the items whose ``key``
    equals ``value`` (e.g. ``trace[source=firm].actual``: the firm's own values).
    """
    for path in paths:
        _blank(payload, path.split("."))
    return payload


def _blank(node: Any, parts: list[str]) -> None:
    if not parts or not isinstance(node, dict):
        return
    m = _SEGMENT.match(parts[0])
    if m is None:
        raise ValueError(f"bad field path segment {parts[0]!r}")
    name, rest = m["name"], parts[1:]
    if name not in node:
        return
    if m["list"] is None:
        if rest:
            _blank(node[name], rest)
        else:
            node[name] = None
        return
    items = node[name] if isinstance(node[name], list) else []
    for item in items:
        if m["key"] is None or (isinstance(item, dict) and str(item.get(m["key"])) == m["value"]):
            _blank(item, rest)


def markdown() -> str:
    """Return the access table as Markdown (the README prints this)."""
    head = "| endpoint | " + " | ".join(ROLES) + " | audited | what; fields needing another scope |"
    lines = [head, "|" + " --- |" * (len(ROLES) + 3)]
    for a in TABLE:
        if a.public:
            cells = ["public: no key", *[""] * (len(ROLES) - 1)]
        else:
            cells = [a.grant(r) or "–" for r in ROLES]
        by_scope: dict[str, list[str]] = {}
        for f, scope in a.fields.items():
            by_scope.setdefault(scope, []).append(f"`{f}`")
        hidden = "; ".join(f"{scope} for {', '.join(fs)}" for scope, fs in by_scope.items())
        what = a.note + (f"; {hidden}" if hidden else "")
        audited = "yes" if a.audited else ""
        lines.append(f"| `{a.key}` | " + " | ".join(cells) + f" | {audited} | {what} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the README table
    print(markdown())  # noqa: T201
