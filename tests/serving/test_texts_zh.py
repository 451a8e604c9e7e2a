# ruff: noqa: F811  (fixtures are imported, then requested by name)
"""One language at a time: every user-facing text comes from the zh/en catalog, and Chinese
pages and answers carry no Latin-script identifier that is not a code or a proper name
(the rule is in ``latin.py``)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kx_browser import browser, serve_in_thread  # noqa: F401
from kx_service import ServedWorld, served_world  # noqa: F401
from latin import leaks

from features.catalog import load_catalog
from features.tables import DISTRICTS, INDUSTRIES, MARKETPLACES
from features.texts import catalog, texts_for
from tradefinance.products import load_products

ROOT = Path(__file__).resolve().parents[2]
COUNTRY_CSV = ROOT / "features" / "config" / "oecd_country_risk_2026-01.csv"
with COUNTRY_CSV.open(encoding="utf-8") as _rows:
    ISO3 = [r["iso3"] for r in csv.DictReader(_rows)]


def test_the_leak_rule_flags_identifiers_and_allows_codes() -> None:
    for bad in (
        "Russia 属于经合组织国家风险第7类",
        "OECD category HI",
        "买方 buyer grade unknown",
        "enterprise",
        "own record",
        "POST /v1/firms/{usc_code}/quote",
        "要求 need.purpose in {order_fulfilment}",
        "store_age_months >= 6",
        "宝安 baoan",
    ):
        assert leaks(bad, ISO3), bad
    for good in (
        "美国（USA，高收入国家）",
        "信用等级 不低于 BB",
        "纳税信用等级（A/B/M/C/D）",
        "支付方式 O/A",
        "91440300MA5G2X7KX0",
        "政策性融资（pcb_policy_financing）",
        "金额 50,000 USD",
        "跨境电商B2B直接出口",
    ):
        assert leaks(good, ISO3) == [], good
    assert leaks("Pengcheng Commercial Bank 查询", names=["Pengcheng Commercial Bank"]) == []


def test_every_chinese_text_of_the_catalogs_is_clean() -> None:
    texts = {f"texts:{k}": v["zh"] for k, v in catalog().items()}
    features = load_catalog()
    for name in features.names:
        texts[f"feature:{name}"] = features[name].description_zh + " " + features[name].reason_zh
    status = yaml.safe_load((ROOT / "features/config/default_status.yaml").read_text("utf-8"))
    texts |= {f"default:{r['feature']}": r["text_zh"] for r in status["rules"]}
    for p in load_products():
        texts[f"product:{p.id}"] = p.name_zh + " " + p.provider.name_zh
    # {fields} are filled at run time (with texts that pass the same test in the answers).
    bad = {k: leaks(re.sub(r"\{[^{}]*\}", " ", v), ISO3) for k, v in texts.items()}
    assert not {k: v for k, v in bad.items() if v}


def test_the_catalog_names_every_code_a_page_shows() -> None:
    zh = texts_for("zh")
    missing = [f"country.{c}" for c in ISO3 if f"country.{c}" not in zh]
    missing += [f"district.{d}" for d in DISTRICTS if f"district.{d}" not in zh]
    missing += [f"industry.{i}" for i in INDUSTRIES if f"industry.{i}" not in zh]
    missing += [f"marketplace.{m}" for m in MARKETPLACES if f"marketplace.{m}" not in zh]
    features = load_catalog()
    missing += [
        f"unit.{features[n].unit}" for n in features.names if f"unit.{features[n].unit}" not in zh
    ]
    products = load_products()
    missing += [
        f"policy_tag.{t}" for p in products for t in p.policy_tags if f"policy_tag.{t}" not in zh
    ]
    missing += [f"purpose_{u}" for u in products.purposes if f"purpose_{u}" not in zh]
    # Every category value of a feature reads as words in Chinese, or is a code (grades).
    from features.labels import value_label

    for n in features.names:
        for v in features[n].categories or []:
            if leaks(value_label(n, str(v), "zh"), ISO3):
                missing.append(f"{n}.{v}")
    for role in ("bank", "insurer", "enterprise", "regulator", "admin"):
        if f"role.{role}" not in zh:
            missing.append(f"role.{role}")
    assert not missing


def _zh_strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string under a key ending in ``_zh`` (the Chinese half of an answer)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith("_zh"):
                for _, s in _all_strings(v, f"{path}.{k}"):
                    yield f"{path}.{k}", s
            else:
                yield from _zh_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _zh_strings(v, f"{path}[{i}]")


def _all_strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _all_strings(v, path)
    elif isinstance(node, list):
        for v in node:
            yield from _all_strings(v, path)


def test_chinese_answers_of_the_api_are_clean(served_world: ServedWorld) -> None:
    firm = served_world.firm
    ent = served_world.headers("enterprise")
    with TestClient(served_world.app()) as client:
        answers = {
            "score": client.get(f"/v1/firms/{firm}/score", headers=ent),
            "explanation": client.get(f"/v1/firms/{firm}/explanation", headers=ent),
            "matches": client.post(
                f"/v1/firms/{firm}/matches",
                json={"amount_cny": 800000, "purpose": "working_capital", "tenor_months": 6},
                headers=ent,
            ),
            "quote": client.post(
                f"/v1/firms/{firm}/quote",
                json={"buyer_country": "USA", "terms": "O/A", "credit_days": 60, "amount_usd": 5e4},
                headers=ent,
            ),
            "declined": client.post(
                f"/v1/firms/{firm}/quote",
                json={"buyer_country": "RUS", "terms": "O/A", "credit_days": 60, "amount_usd": 5e4},
                headers=ent,
            ),
            "countries": client.get("/v1/countries", headers=ent),
        }
    found: dict[str, list[str]] = {}
    count = 0
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.text)
        for where, s in _zh_strings(r.json(), name):
            count += 1
            bad = leaks(s, ISO3)
            if bad:
                found[where] = bad
    assert count > 100  # the answers do carry Chinese texts: traces, declines, components
    assert not found, dict(list(found.items())[:20])
    decline = answers["declined"].json()["quote"]["declines"][0]
    assert decline["message_zh"].startswith("俄罗斯") and decline["params"]["iso3"] == "RUS"


# ---------------------------------------------------------------------------------------------
# The Chinese portal in a browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(served_world: ServedWorld) -> Iterator[str]:
    yield from serve_in_thread(served_world.app())


def _names(world: ServedWorld) -> list[str]:
    """Proper names a page may show: institutions, the firm's consent purposes, the model."""
    from serving.db import Database
    from serving.models import ApiKey, Consent

    db = Database(world.settings.database_url)
    with db.session() as s:
        names = [k.org for k in s.query(ApiKey)] + [c.purpose for c in s.query(Consent)]
    db.dispose()
    return [*names, str(world.loaded.model_version)]


@pytest.mark.browser
def test_chinese_portal_pages_show_no_english(
    browser: Any, server_url: str, served_world: ServedWorld
) -> None:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    page.goto(f"{server_url}/portal/?lang=zh")
    page.get_by_label("企业 API 密钥").fill(served_world.keys["enterprise"])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/portal/grade")
    page.locator("#reasons-list li").first.wait_for()
    texts = {"grade": page.locator("main").inner_text()}
    page.goto(f"{server_url}/portal/matches")
    page.get_by_role("button", name="查找匹配产品").click()
    page.locator("article.product").first.wait_for()
    for d in page.locator("article.product details").all():
        d.evaluate("el => el.open = true")
    texts["matches"] = page.locator("main").inner_text()
    page.goto(f"{server_url}/portal/what-if")
    page.locator("#whatif-fields .field").first.wait_for()
    texts["what-if"] = page.locator("main").inner_text()
    page.goto(f"{server_url}/portal/quote")
    page.locator("#q-country option").first.wait_for(state="attached")
    page.get_by_role("button", name="获取报价").click()
    page.locator("#quote-ok, #quote-declined").first.wait_for()
    texts["quote"] = page.locator("main").inner_text()
    page.locator("#q-country").select_option("RUS")
    page.get_by_role("button", name="获取报价").click()
    page.locator("#quote-declined").wait_for()
    texts["quote-declined"] = page.locator("main").inner_text()
    page.goto(f"{server_url}/portal/access-log")
    page.locator("#hide-own").uncheck()
    page.locator("#access-table tbody tr td").first.wait_for()
    page.wait_for_load_state("networkidle")
    texts["access-log"] = page.locator("main").inner_text()
    texts["nav"] = page.locator("header").inner_text()
    shots = os.environ.get("KUAXIN_SCREENSHOT_DIR")
    if shots:
        for name, text in texts.items():
            (Path(shots) / f"zh-{name}.txt").write_text(text, encoding="utf-8")
    names = _names(served_world)
    found = {k: leaks(v, ISO3, names) for k, v in texts.items()}
    assert not {k: v for k, v in found.items() if v}
    assert "俄罗斯" in texts["quote-declined"] and "产品匹配" in texts["access-log"]
    ctx.close()
