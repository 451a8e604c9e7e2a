# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""The enterprise portal in headless Chromium (Debian's /usr/bin/chromium via Playwright)
against a real uvicorn server: sign in, grade and reasons, matches, what-if, quote, access
log, language switch and a phone-width screen; a screenshot of each page is saved.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kx_browser import browser, serve_in_thread  # noqa: F401
from kx_service import ServedWorld, served_world  # noqa: F401


def test_pages_render_in_both_languages_without_firm_data(served_world: ServedWorld) -> None:
    with TestClient(served_world.app()) as client:
        for page in ("", "grade", "matches", "what-if", "quote", "access-log"):
            zh = client.get(f"/portal/{page}?lang=zh")
            en = client.get(f"/portal/{page}?lang=en")
            assert zh.status_code == en.status_code == 200
            assert '<html lang="zh-CN">' in zh.text and '<html lang="en">' in en.text
            assert served_world.firm not in zh.text  # data only comes from the API
            assert "Content-Security-Policy" in zh.headers
            assert "http://" not in zh.text.replace("http://www.w3.org", "")  # no CDN
        assert client.get("/portal/static/portal.css").status_code == 200
        # The language sticks through the cookie.
        client.get("/portal/grade?lang=en")
        assert '<html lang="en">' in client.get("/portal/matches").text
        who = client.get("/portal/api/whoami", headers=served_world.headers("enterprise")).json()
        name = str(
            served_world.loaded.snapshot.set_index("usc_code").loc[served_world.firm, "name"]
        )
        assert who == {
            "role": "enterprise",
            "org": "the firm",
            "firm_usc": served_world.firm,
            "firm_name": name,
        }
        assert client.get("/portal/api/whoami").status_code == 401
        feats = client.get(
            "/portal/api/features", headers=served_world.headers("enterprise")
        ).json()
        assert feats["features"] and all(f["description_zh"] for f in feats["features"])
        assert any(f["actionable"] for f in feats["features"])


# ---------------------------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(served_world: ServedWorld) -> Iterator[str]:
    yield from serve_in_thread(served_world.app())


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KUAXIN_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CONTRAST_JS = """
(selectors) => {
  function rgb(s) { const m = s.match(/[\\d.]+/g).map(Number); return m; }
  function lum(c) { const a = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2]; }
  function bg(el) { while (el) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length < 4 || c[3] > 0) return c; el = el.parentElement; } return [255, 255, 255]; }
  const out = [];
  for (const sel of selectors) for (const el of document.querySelectorAll(sel)) {
    if (!el.offsetParent && el.tagName !== 'BODY') continue;
    const f = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    out.push([sel, (Math.max(f, b) + 0.05) / (Math.min(f, b) + 0.05)]);
  }
  return out;
}
"""
UNLABELLED_JS = """
() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
  .filter(el => el.labels === null || el.labels.length === 0).map(el => el.id || el.name)
"""


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _check_accessible(page: Any) -> None:
    assert page.evaluate(UNLABELLED_JS) == []
    ratios = page.evaluate(
        CONTRAST_JS,
        ["body", "h1", "h2", "label", "button", "nav a", "td", ".badge", ".muted", "dt"],
    )
    low = [(s, round(r, 2)) for s, r in ratios if r < 4.5]
    assert not low, f"contrast below WCAG AA 4.5:1: {low}"


def _grade_changing_change(world: ServedWorld) -> tuple[str, float, str]:
    """An actionable feature value that changes the firm's grade (found by scoring directly)."""
    loaded = world.loaded
    row = loaded.features_of(world.firm)
    before = str(loaded.scores.loc[world.firm, "grade"])
    catalog = loaded.catalog
    candidates = []
    for name in catalog.actionable:
        spec = catalog[name]
        if name not in loaded.model.feature_names or spec.dtype not in ("float", "int"):
            continue
        if spec.direction == "none" or spec.lower is None or spec.upper is None:
            continue
        # Against the risk direction first (better grade), then with it (worse grade).
        good = spec.lower if spec.direction == "increases_risk" else spec.upper
        bad = spec.upper if spec.direction == "increases_risk" else spec.lower
        candidates += [(0, name, good), (1, name, bad)]
    for _, name, target in sorted(candidates):
        spec = catalog[name]
        target = float(int(target)) if spec.dtype == "int" else float(target)
        current = row[name].iat[0]
        if pd.notna(current) and float(current) == target:
            continue
        changed = row.copy()
        changed[name] = target
        after = str(loaded.model.score(changed, num_threads=1)["grade"].iat[0])
        if after != before:
            return name, target, after
    pytest.fail("no single actionable change moves the demo firm's grade")


@pytest.mark.browser
def test_portal_end_to_end(
    browser: Any, server_url: str, served_world: ServedWorld, shots: Path
) -> None:
    world = served_world
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    # Sign in (a bank key is refused, the firm's key accepted).
    page.goto(f"{server_url}/portal/?lang=en")
    page.get_by_label("Firm API key").fill(world.keys["bank"])
    page.get_by_role("button", name="Sign in").click()
    page.locator("#error").wait_for(state="visible")
    assert "not a firm key" in page.locator("#error").inner_text()
    _check_accessible(page)
    page.screenshot(path=str(shots / "01-signin.png"), full_page=True)
    page.get_by_label("Firm API key").fill(world.keys["enterprise"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/portal/grade")
    # The firm is named as registered, not by the label of its key.
    name = str(world.loaded.snapshot.set_index("usc_code").loc[world.firm, "name"])
    _expect()(page.locator("#who")).to_contain_text(name)
    assert "the firm" not in page.locator("#who").inner_text()

    # Grade card and reasons chart.
    expected = str(world.loaded.scores.loc[world.firm, "grade"])
    _expect()(page.locator("#grade-value")).not_to_have_text("…")
    assert page.locator("#grade-value").inner_text() == expected
    assert page.locator("#reasons-chart svg rect").count() >= 3
    assert page.locator("#reasons-list li").count() >= 1
    _check_accessible(page)
    page.screenshot(path=str(shots / "02-grade.png"), full_page=True)

    # Matches with the rule-by-rule trace.
    page.get_by_role("link", name="Matches").click()
    page.wait_for_url("**/portal/matches")
    page.get_by_role("button", name="Find matches").click()
    page.locator("article.product").first.wait_for()
    n_products = (
        len(world.app().state.market.products) if hasattr(world.app().state, "market") else None
    )
    assert (
        page.locator("article.product").count() >= 12
        or page.locator("article.product").count() == n_products
    )
    first = page.locator("article.product").first
    # An eligible loan that cannot cover the need never ranks before one that can.
    flags = [a.get_attribute("data-covers-need") for a in page.locator("article.product.ok").all()]
    loans = flags[: len([f for f in flags if f is not None])]
    assert loans == sorted(loans, key=lambda f: f != "true")
    if page.locator("article.product.ok[data-covers-need]").count():
        assert page.locator("article.product.ok .covers").count() >= 1
    first.locator("summary").click()
    assert first.locator("tbody tr").count() >= 1
    _check_accessible(page)
    page.screenshot(path=str(shots / "03-matches.png"), full_page=True)

    # What-if: a change that moves the grade, made through the form.
    feature, value, new_grade = _grade_changing_change(world)
    page.get_by_role("link", name="What-if").click()
    page.wait_for_url("**/portal/what-if")
    _expect()(page.locator("#grade-before")).not_to_have_text("…")
    # Every actionable figure, prefilled with the firm's value, is one the form accepts.
    options = page.eval_on_selector_all("#add-feature option", "os => os.map(o => o.value)")
    for opt in options:
        if opt and opt != feature:
            page.locator("#add-feature").select_option(opt)
            page.get_by_role("button", name="Add").click()
    invalid = page.evaluate(
        "Array.from(document.querySelectorAll('#whatif-fields input'))"
        ".filter(i => !i.checkValidity()).map(i => i.id + '=' + i.value)"
    )
    assert invalid == []
    if page.locator(f"#wi-{feature}").count() == 0:
        page.locator("#add-feature").select_option(feature)
        page.get_by_role("button", name="Add").click()
    page.locator(f"#wi-{feature}").fill(str(value))
    page.get_by_role("button", name="Recalculate").click()
    _expect()(page.locator("#grade-after")).not_to_have_text("–")
    assert page.locator("#grade-before").inner_text() == expected
    assert page.locator("#grade-after").inner_text() == new_grade != expected
    _check_accessible(page)
    page.screenshot(path=str(shots / "04-what-if.png"), full_page=True)

    # Insurance quote.
    page.get_by_role("link", name="Insurance quote").click()
    page.wait_for_url("**/portal/quote")
    _expect()(page.locator("#q-country option")).not_to_have_count(0)
    page.get_by_label("Buyer country").select_option("DEU")
    page.get_by_label("Payment terms").select_option("D/A")
    page.get_by_label("Credit period (days)").fill("90")
    page.get_by_role("button", name="Get a quote").click()
    page.locator("#quote-ok, #quote-declined").first.wait_for()
    if page.locator("#quote-ok").count():
        assert page.locator("#quote-ok tbody tr").count() == 7
    _check_accessible(page)
    page.screenshot(path=str(shots / "05-quote.png"), full_page=True)

    # Access log: the firm's own views are hidden by default; shown, they name the endpoints.
    page.get_by_role("link", name="Access log").click()
    page.wait_for_url("**/portal/access-log")
    page.locator("#access-table tbody tr td").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert "The firm itself" not in page.locator("#access-table").inner_text()
    page.get_by_label("Hide my own views").uncheck()
    _expect()(page.locator("#access-table")).to_contain_text("The firm itself")
    text = page.locator("#access-table").inner_text()
    assert "Product matching" in text and "Insurance quote" in text
    # Pages of 20: "Load more" appends the next page.
    rows = page.locator("#access-table tbody tr").count()
    if page.locator("#access-more").is_visible():
        page.get_by_role("button", name="Load more").click()
        _expect()(page.locator("#access-table tbody tr")).not_to_have_count(rows)
        assert page.locator("#access-table tbody tr").count() > rows == 20
    page.screenshot(path=str(shots / "06-access-log.png"), full_page=True)

    # Switch language.
    page.locator("#lang-toggle").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("link", name="信用等级").count() == 1
    page.locator("#access-table tbody tr td").first.wait_for()
    page.screenshot(path=str(shots / "07-access-log-zh.png"), full_page=True)

    # The key never appears in a URL; nothing is fetched from another origin.
    key = world.keys["enterprise"]
    assert all(key not in u for u in requests)
    assert all(u.startswith(server_url) for u in requests)
    assert not errors, errors
    ctx.close()


@pytest.mark.browser
def test_portal_on_a_phone(
    browser: Any, server_url: str, served_world: ServedWorld, shots: Path
) -> None:
    ctx = browser.new_context(
        viewport={"width": 375, "height": 740}, locale="zh-CN", is_mobile=True
    )
    page = ctx.new_page()
    page.goto(f"{server_url}/portal/?lang=zh")
    page.get_by_label("企业 API 密钥").fill(served_world.keys["enterprise"])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/portal/grade")
    _expect()(page.locator("#grade-value")).not_to_have_text("…")
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    page.screenshot(path=str(shots / "08-phone-grade.png"), full_page=True)
    page.goto(f"{server_url}/portal/matches")
    page.get_by_role("button", name="查找匹配产品").click()
    page.locator("article.product").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    _check_accessible(page)
    page.screenshot(path=str(shots / "09-phone-matches.png"), full_page=True)
    # Signing out forgets the key.
    page.get_by_role("button", name="退出").click()
    page.wait_for_url("**/portal/")
    assert page.evaluate("sessionStorage.length") == 0
    ctx.close()
