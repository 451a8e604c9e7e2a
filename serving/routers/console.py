"""Pages of the applications loop: the firm's applications page and the provider console.

- ``GET /portal/applications``: the firm applies (one product or every eligible provider) and
  follows its applications: status, decision, terms, adverse-action notice; withdraw, reply.
- ``GET /console/`` sign-in with a bank or insurer key, ``/console/inbox``, and
  ``/console/application?id=N``: the frozen view and the decision and outcome forms.

The pages carry no data; ``apps.js`` reads it from ``/v1`` with the key in ``sessionStorage``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from serving.market import MarketDep
from serving.portal.render import pick_lang, render

router = APIRouter(include_in_schema=False)
LangQuery = Annotated[str | None, Query(pattern="^(zh|en)$", description="zh or en")]


@router.get("/portal/applications", response_class=HTMLResponse)
def firm_applications(request: Request, market: MarketDep, lang: LangQuery = None) -> Response:
    """Render the firm's applications page."""
    purposes = sorted({p for prod in market.products for p in prod.purposes})
    return render(
        request,
        "applications.html",
        "applications",
        "app_title",
        pick_lang(request, lang),
        purposes=purposes,
    )


@router.get("/console", response_class=RedirectResponse)
def console_root() -> RedirectResponse:
    """Canonical console address ends with a slash."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/", response_class=HTMLResponse)
def console_signin(request: Request, lang: LangQuery = None) -> Response:
    """Render the provider sign-in."""
    return render(
        request,
        "console_signin.html",
        "console-signin",
        "app_console_signin",
        pick_lang(request, lang),
    )


@router.get("/console/inbox", response_class=HTMLResponse)
def console_inbox(request: Request, lang: LangQuery = None) -> Response:
    """Render the provider's inbox."""
    return render(
        request, "console_inbox.html", "console-inbox", "app_inbox", pick_lang(request, lang)
    )


@router.get("/console/application", response_class=HTMLResponse)
def console_application(request: Request, lang: LangQuery = None) -> Response:
    """Render one application: frozen view, decision and outcome forms."""
    return render(
        request,
        "console_application.html",
        "console-application",
        "app_frozen",
        pick_lang(request, lang),
    )


def register(app: FastAPI) -> None:
    """Mount the pages (static files are the portal's, mounted by its router)."""
    app.include_router(router)
