"""The enterprise portal's pages, static files and two small JSON helpers.

Pages are server-rendered shells (Jinja2) in Chinese or English; their scripts read the firm's
data from the ``/v1`` API with the key kept in ``sessionStorage``. ``register(app)`` mounts:

- ``GET /`` (redirect) and ``GET /portal/`` sign-in, ``/portal/grade``, ``/portal/matches``,
  ``/portal/what-if``, ``/portal/quote``, ``/portal/access-log``;
- ``GET /portal/static/...`` (CSS, JS; no external CDN);
- ``GET /portal/api/whoami`` (the caller's role, institution and firm) and
  ``GET /portal/api/features`` (labels and bounds of the actionable features for what-if).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from features.labels import has_text, value_label
from features.texts import text
from features.values import is_missing
from serving.deps import CurrentKey, LoadedDep
from serving.market import MarketDep
from serving.portal.texts import LANGS, texts_for
from serving.problems import problem_responses
from tradefinance.matching import Shipment
from tradefinance.pricing import PAYMENT_TERMS

PORTAL_DIR = Path(__file__).resolve().parents[1] / "portal"
PREFIX = "/portal"
API_PREFIX = "/v1"
LANG_COOKIE = "kx_lang"
#: (text key, page path) of the navigation, in order.
NAV = [
    ("grade", "grade"),
    ("matches", "matches"),
    ("whatif", "what-if"),
    ("quote", "quote"),
    ("applications", "applications"),  # served by serving/routers/console.py
    ("access", "access-log"),
]
PAGES = {
    "grade": ("grade.html", "grade_title"),
    "matches": ("matches.html", "matches_title"),
    "what-if": ("whatif.html", "whatif_title"),
    "quote": ("quote.html", "quote_title"),
    "access-log": ("access.html", "access_title"),
}
SECURITY_HEADERS = {
    # Only our own scripts and styles; no inline script execution (the texts block is JSON data).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix=f"{PREFIX}/api", tags=["portal"])
_templates = Jinja2Templates(directory=str(PORTAL_DIR / "templates"))


def pick_lang(request: Request, lang: str | None) -> str:
    """Language: the ``lang`` query, else the cookie, else the browser's preference, else zh."""
    if lang in LANGS:
        return lang
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGS:
        return cookie
    accept = request.headers.get("accept-language", "").lower()
    if accept.startswith("en"):
        return "en"
    return "zh"


def _render(
    request: Request, page: str, template: str, title_key: str, lang: str, **extra: Any
) -> Response:
    texts = texts_for(lang)
    context = {
        "page": page,
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "t": texts,
        # "</" cannot end the JSON <script> block early.
        "texts_json": json.dumps(texts, ensure_ascii=False).replace("</", "<\\/"),
        "title_key": title_key,
        "nav": NAV,
        "static_url": f"{PREFIX}/static",
        "api_prefix": API_PREFIX,
        "portal_prefix": PREFIX,
        **extra,
    }
    response = _templates.TemplateResponse(request, template, context)
    for key, value in SECURITY_HEADERS.items():
        response.headers[key] = value
    response.set_cookie(LANG_COOKIE, lang, samesite="strict", httponly=True, max_age=365 * 86400)
    return response


LangQuery = Annotated[str | None, Query(pattern="^(zh|en)$", description="zh or en")]


@router.get("/", response_class=RedirectResponse)
def root() -> RedirectResponse:
    """Send browsers to the portal."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(f"{PREFIX}", response_class=RedirectResponse)
def portal_root() -> RedirectResponse:
    """Canonical portal address ends with a slash."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)


@router.get(f"{PREFIX}/", response_class=HTMLResponse)
def sign_in(request: Request, lang: LangQuery = None) -> Response:
    """Sign-in page."""
    return _render(request, "signin", "signin.html", "signin_title", pick_lang(request, lang))


@router.post(f"{PREFIX}/", response_class=HTMLResponse)
def sign_in_without_script(request: Request, lang: LangQuery = None) -> Response:
    """Answer the sign-in form sent without JavaScript with the page (the key is never sent)."""
    return _render(request, "signin", "signin.html", "signin_title", pick_lang(request, lang))


def _page(name: str) -> Any:
    template, title = PAGES[name]

    def page(request: Request, market: MarketDep, lang: LangQuery = None) -> Response:
        purposes = market.products.purposes
        return _render(
            request,
            name,
            template,
            title,
            pick_lang(request, lang),
            purposes=purposes,
            terms=PAYMENT_TERMS,
            buyer_grades=list(market.pricing.insurance.buyer_grades),
            default_shipment=Shipment(**market.pricing.default_shipment.model_dump()),
        )

    page.__name__ = f"page_{name.replace('-', '_')}"
    page.__doc__ = f"Portal page: {name}."
    return page


for _name in PAGES:
    router.add_api_route(
        f"{PREFIX}/{_name}", _page(_name), methods=["GET"], response_class=HTMLResponse
    )


class WhoAmI(BaseModel):
    """The caller behind a key (an enterprise key also names its firm as registered)."""

    role: str
    org: str
    firm_usc: str | None
    firm_name: str | None = None


class FeatureLabel(BaseModel):
    """A model feature: labels, and for actionable ones what the what-if form may set."""

    name: str
    description_en: str
    description_zh: str
    unit: str | None
    unit_zh: str | None
    unit_en: str | None
    dtype: str
    actionable: bool
    lower: float | None
    upper: float | None
    step: float | None
    categories: list[str] | None
    category_labels_zh: dict[str, str] | None
    category_labels_en: dict[str, str] | None


class FeatureLabels(BaseModel):
    """Features of the served model (labels for charts, bounds for what-if)."""

    features: list[FeatureLabel]


@api_router.get("/whoami", response_model=WhoAmI, responses=problem_responses(401))
def whoami(principal: CurrentKey, request: Request) -> dict[str, Any]:
    """Role, institution and (for an enterprise key) firm and its registered name."""
    name = None
    current = request.app.state.serving.current
    if principal.firm_usc and current is not None and principal.firm_usc in current.position:
        row = current.snapshot.iloc[current.position[principal.firm_usc]]
        raw = row.get("name") if "name" in row.index else None
        name = None if raw is None or is_missing(raw) else str(raw)
    return {
        "role": principal.role,
        "org": principal.org,
        "firm_usc": principal.firm_usc,
        "firm_name": name,
    }


@api_router.get("/features", response_model=FeatureLabels, responses=problem_responses(401, 503))
def features(_: CurrentKey, loaded: LoadedDep) -> dict[str, Any]:
    """Labels, units, bounds and steps of the served model's features (no firm data)."""
    catalog = loaded.catalog
    if catalog is None:
        return {"features": []}
    actionable = set(catalog.actionable)
    out = []
    for name in loaded.model.feature_names:
        if name not in catalog:
            continue
        spec = catalog[name]
        out.append(
            {
                "name": name,
                "description_en": spec.description_en,
                "description_zh": spec.description_zh,
                "unit": spec.unit,
                "unit_zh": _unit(spec.unit, "zh"),
                "unit_en": _unit(spec.unit, "en"),
                "dtype": spec.dtype,
                "actionable": name in actionable,
                "lower": spec.lower,
                "upper": spec.upper,
                "step": spec.step,
                "categories": [str(c) for c in spec.categories] if spec.categories else None,
                **{
                    f"category_labels_{lang}": {
                        str(c): value_label(name, str(c), lang) for c in spec.categories
                    }
                    if spec.categories
                    else None
                    for lang in LANGS
                },
            }
        )
    return {"features": out}


def _unit(unit: str | None, lang: str) -> str | None:
    key = f"unit.{unit}"
    return text(key, lang) if unit and has_text(key) else unit


def register(app: FastAPI) -> None:
    """Mount the portal's pages, static files and helpers on ``app``."""
    app.mount(
        f"{PREFIX}/static", StaticFiles(directory=str(PORTAL_DIR / "static")), name="portal-static"
    )
    app.include_router(router)
    app.include_router(api_router)
