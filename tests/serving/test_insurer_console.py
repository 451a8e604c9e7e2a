# ruff: noqa: F811  (fixtures are imported, then requested by name)
"""The insurer console in headless Chromium (Debian's /usr/bin/chromium via Playwright) against a
real uvicorn server, in Chinese and English: sign in, look up a buyer (grade, reasons, limit),
compute the book's loss distribution (chart, VaR/ES), list claims; a non-insurer key is refused.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kx_browser import browser  # noqa: F401  (fixture: fails in CI without chromium)
from kx_insurer import INSURER, InsurerWorld, insurer_world  # noqa: F401
from kx_service import served_world  # noqa: F401

from features.texts import texts_for

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def seeded(insurer_world: InsurerWorld) -> InsurerWorld:
    """Limits on two buyers and one claim in the insurer's book, through the API."""
    w = insurer_world
    with TestClient(w.app()) as c:
        for buyer, amount in (("BYUSA000001", 200_000), ("BYDEU000002", 50_000)):
            r = c.post(
                f"/v1/firms/{w.firm}/buyer-limits",
                json={"buyer_id": buyer, "amount_usd": amount},
                headers=w.headers("insurer"),
            )
            assert r.status_code == 200, r.text
        r = c.post(
            f"/v1/firms/{w.firm}/claims",
            headers=w.headers("insurer"),
            json={
                "policy_id": "P1",
                "buyer_id": "BYDEU000002",
                "due_date": "2025-01-10",
                "notified_date": "2025-02-01",
                "loss_usd": 80_000,
            },
        )
        assert r.status_code == 201, r.text
    return w


@pytest.fixture(scope="module")
def server_url(seeded: InsurerWorld) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(seeded.app(), host="127.0.0.1", port=port, log_level="warning")
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
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_console_buyer_book_and_claims(
    browser: Any, server_url: str, seeded: InsurerWorld, lang: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    t = texts_for(lang, "ins_")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server_url}/insurer-console/?lang={lang}")
    expect(page.locator("h1")).to_have_text(t["ins_title"])
    page.fill("#key", seeded.keys["insurer"])
    page.click("#signin button")
    expect(page.locator("#who")).to_contain_text(INSURER)
    # Buyer lookup: grade, the limit with its reasons, the grade's reasons.
    page.fill("#buyer-id", "BYUSA000001")
    page.click("#buyer-form button")
    expect(page.locator("#buyer-grade")).to_have_text("A")
    expect(page.locator("#limit-reasons li").first).to_be_visible()
    assert page.locator("#buyer-out").inner_text().count(t["ins_limit_recommended"]) == 1
    expect(page.locator("#grade-reasons li").first).to_contain_text(t["ins_feature_dbt_3m"])
    # A thin buyer: the experience is withheld.
    page.fill("#buyer-id", "BYDEU000002")
    page.click("#buyer-form button")
    expect(page.locator("#withheld")).to_have_text(t["ins_withheld"])
    # The book: the chart has bars and VaR lines, the table one row per level.
    page.click("#book-load")
    expect(page.locator("#loss-chart")).to_be_visible(timeout=30_000)
    assert page.locator("#loss-chart rect.bar").count() > 5
    assert page.locator("#loss-chart line.var").count() == 2
    assert page.locator("#book-out table").first.locator("tbody tr").count() == 2
    # Claims: the one notice, declined or waiting or paid, in the page's language.
    page.click("#claims-load")
    row = page.locator("#claims-out tbody tr")
    expect(row).to_have_count(1)
    status = row.locator("td").nth(3).inner_text()
    assert status in {t["ins_status_paid"], t["ins_status_waiting"], t["ins_status_declined"]}
    shots = Path(os.environ.get("KUAXIN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"insurer-console-{lang}.png"), full_page=True)
    assert not errors, errors
    page.close()


@pytest.mark.browser
def test_console_refuses_a_non_insurer_key(
    browser: Any, server_url: str, seeded: InsurerWorld
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{server_url}/insurer-console/?lang=en")
    page.fill("#key", seeded.keys["enterprise"])
    page.click("#signin button")
    expect(page.locator("#error")).to_have_text(texts_for("en", "ins_")["ins_wrong_role"])
    assert page.locator("#console").is_hidden()
    page.close()
