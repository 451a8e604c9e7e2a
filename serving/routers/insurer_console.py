"""The insurer console: buyer lookup, the book's exposure and loss distribution, claims.

A server-rendered shell (Jinja2, zh/en) whose script reads the insurer's data from the ``/v1``
API with the insurer's key kept in ``sessionStorage`` (never in a URL). Texts are the
``ins_`` keys of ``features/config/texts/insurer.yaml``. ``register(app)`` mounts
``GET /insurer-console/`` and its static files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from features.texts import LANGS, texts_for

PORTAL_DIR = Path(__file__).resolve().parents[1] / "portal"
PREFIX = "/insurer-console"
LANG_COOKIE = "kx_lang"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
router = APIRouter(include_in_schema=False)
_templates = Jinja2Templates(directory=str(PORTAL_DIR / "templates"))


def _lang(request: Request, lang: str | None) -> str:
    if lang in LANGS:
        return lang
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGS:
        return cookie
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "zh"


@router.get(f"{PREFIX}/", response_class=HTMLResponse)
def console(
    request: Request, lang: Annotated[str | None, Query(pattern="^(zh|en)$")] = None
) -> Response:
    """Serve the insurer console page."""
    chosen = _lang(request, lang)
    texts = texts_for(chosen, "ins_")
    response = _templates.TemplateResponse(
        request,
        "insurer/console.html",
        {
            "lang": chosen,
            "other_lang": "en" if chosen == "zh" else "zh",
            "t": texts,
            "texts_json": json.dumps(texts, ensure_ascii=False).replace("</", "<\\/"),
            "static_url": f"{PREFIX}/static",
            "portal_static": "/portal/static",
        },
    )
    for key, value in SECURITY_HEADERS.items():
        response.headers[key] = value
    response.set_cookie(LANG_COOKIE, chosen, samesite="strict", httponly=True, max_age=365 * 86400)
    return response


def register(app: FastAPI) -> None:
    """Mount the console page and its static files on ``app``."""
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=str(PORTAL_DIR / "static" / "insurer")),
        name="insurer-static",
    )
    app.include_router(router)
