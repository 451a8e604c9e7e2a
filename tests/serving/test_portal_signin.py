# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""The portal's sign-in form never puts the key in a URL, with or without JavaScript (real
uvicorn, Debian's chromium with JavaScript off, every request the browser makes recorded)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from kx_service import ServedWorld, served_world  # noqa: F401

CHROMIUM = "/usr/bin/chromium"


def test_signin_form_posts_and_names_no_key_field(served_world: ServedWorld) -> None:
    with TestClient(served_world.app()) as client:
        page = client.get("/portal/").text
        form = page[page.index("<form") : page.index("</form>")]
        assert 'method="post"' in form
        assert 'name="api-key"' not in form and "name=" not in form.split("<input", 1)[1]
        # Submitted without JavaScript: the page again, nothing about a key in the URL.
        r = client.post("/portal/", data={})
        assert r.status_code == 200 and 'id="signin-form"' in r.text


@pytest.fixture(scope="module")
def server_url(served_world: ServedWorld) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(served_world.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.mark.browser
def test_signin_without_javascript_never_sends_the_key(
    server_url: str, served_world: ServedWorld
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    key = served_world.keys["enterprise"]
    seen: list[tuple[str, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(java_script_enabled=False)
            page = context.new_page()
            page.on("request", lambda req: seen.append((req.url, req.post_data or "")))
            page.goto(f"{server_url}/portal/?lang=en")
            page.fill("#api-key", key)
            page.click("#signin-button")
            page.wait_for_load_state()
            final = page.url
        finally:
            browser.close()
    assert len(seen) >= 2  # the page, then the form's submission
    assert key not in final and "api-key" not in final
    assert all(key not in url and key not in body for url, body in seen)
