"""The OpenAPI pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``), served without a CDN.

FastAPI's own pages load their JavaScript and CSS from a public CDN, so they are blank on a
machine without internet access. The assets here come from the ``fastapi-offline`` package
(which ships Swagger UI and ReDoc bundles) and are served by the app itself under
``/docs-static``; ReDoc is told not to fetch Google fonts, and its page may load images only
from the app (its footer would fetch the Redocly logo from their CDN).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"


def assets_dir() -> Path:
    """Folder of the packaged Swagger UI and ReDoc files (``swagger-ui-bundle.js`` ...)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def register(app: FastAPI) -> None:
    """Mount the asset folder and the two documentation pages on ``app``."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(STATIC_URL, StaticFiles(directory=str(assets_dir())), name="docs-static")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
        )

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's footer always loads the Redocly logo from their CDN: images stay local.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page
