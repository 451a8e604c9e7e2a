"""Rendering the applications pages (the firm's page and the provider console).

Same conventions as the enterprise portal (``serving/routers/portal.py``): server-rendered
Jinja2 shells in zh or en, the texts as a JSON block, data fetched from ``/v1`` by the page's
script with the key kept in ``sessionStorage``, and a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from features.texts import LANGS, texts_for

PORTAL_DIR = Path(__file__).resolve().parent
LANG_COOKIE = "kx_lang"
#: The enterprise portal's navigation (kept equal to serving/routers/portal.py NAV).
FIRM_NAV = [
    ("grade", "grade"),
    ("matches", "matches"),
    ("whatif", "what-if"),
    ("quote", "quote"),
    ("applications", "applications"),
    ("access", "access-log"),
]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
templates = Jinja2Templates(directory=str(PORTAL_DIR / "templates"))


def pick_lang(request: Request, lang: str | None) -> str:
    """Language: the ``lang`` query, else the cookie, else the browser's preference, else zh."""
    if lang in LANGS:
        return str(lang)
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGS:
        return str(cookie)
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"


def render(
    request: Request, template: str, page: str, title_key: str, lang: str, **extra: Any
) -> Response:
    """Render a page with the texts of ``lang`` and the security headers."""
    texts = texts_for(lang)
    other = "en" if lang == "zh" else "zh"
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    context = {
        "lang_href": "?" + urlencode({**query, "lang": other}),
        "page": page,
        "lang": lang,
        "other_lang": other,
        "t": texts,
        "texts_json": json.dumps(texts, ensure_ascii=False).replace("</", "<\\/"),
        "title_key": title_key,
        "nav": FIRM_NAV,
        "static_url": "/portal/static",
        "api_prefix": "/v1",
        "portal_prefix": "/portal",
        "console_prefix": "/console",
        **extra,
    }
    response = templates.TemplateResponse(request, template, context)
    for key, value in SECURITY_HEADERS.items():
        response.headers[key] = value
    response.set_cookie(LANG_COOKIE, lang, samesite="strict", httponly=True, max_age=365 * 86400)
    return response
