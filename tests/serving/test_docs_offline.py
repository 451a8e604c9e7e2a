# ruff: noqa: F811  (fixtures are imported, then requested by name)
"""The OpenAPI pages work offline: Swagger UI and ReDoc load their assets from the app itself
(a browser that may reach nothing but the server still shows every operation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kx_browser import browser, serve_in_thread  # noqa: F401
from kx_service import ServedWorld, served_world  # noqa: F401


def test_docs_pages_reference_only_local_assets(served_world: ServedWorld) -> None:
    with TestClient(served_world.app()) as client:
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200
            assert "cdn" not in page.text.lower() and "fonts.googleapis" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            res = client.get(f"/docs-static/{asset}")
            assert res.status_code == 200 and len(res.content) > 10_000


@pytest.fixture(scope="module")
def server_url(served_world: ServedWorld) -> Iterator[str]:
    yield from serve_in_thread(served_world.app())


@pytest.mark.browser
def test_swagger_ui_and_redoc_show_the_operations_offline(
    browser: Any, server_url: str, served_world: ServedWorld
) -> None:
    ctx = browser.new_context()
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server_url):
            route.continue_()
        else:  # no network: anything else fails as it would offline
            outside.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_local)
    page = ctx.new_page()
    page.goto(f"{server_url}/docs")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/firms/{usc_code}/score" in p.replace("\u200b", "") for p in paths), paths
    assert page.locator(".opblock").count() >= 20
    page.goto(f"{server_url}/redoc")
    page.get_by_text("/v1/firms/{usc_code}/score").first.wait_for(timeout=30_000)
    assert page.locator("[data-role='redoc-summary'], li[data-item-id]").count() >= 20
    assert outside == []
    ctx.close()
