"""The product catalog: shipped file valid, coverage of kinds and measures, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from features.catalog import load_catalog
from tradefinance.products import (
    FINANCING_KINDS,
    INSURANCE_KINDS,
    ProductCatalogError,
    catalog_from_dict,
    load_products,
)
from training.scale import default_scales

GRADES = default_scales()[1].grades
SHIPPED = Path(__file__).parents[2] / "tradefinance" / "config" / "products.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_catalog_is_valid_against_feature_catalog_and_master_scale() -> None:
    cat = load_products(known_fields=load_catalog().names, grades=GRADES)
    assert len(cat) >= 12
    kinds = {p.kind for p in cat}
    assert kinds == set(FINANCING_KINDS) | set(INSURANCE_KINDS)
    tags = {t for p in cat for t in p.policy_tags}
    assert {4, 11, 18, 19} <= tags
    # An SME easy-cover product and a comprehensive one; fictional providers except Sinosure.
    ids = {p.id for p in cat}
    assert {"sinosure_steci_comprehensive", "sinosure_sme_easy_cover"} <= ids
    for p in cat:
        assert p.provider.fictional == ("Sinosure" not in p.provider.name_en)
        assert p.rules, p.id


def _broken(raw: dict, index: int, path: list, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(raw))
    node = data["products"][index]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (["amount", "min_cny"], -5, "amount.min_cny"),
        (["pricing", "rate_min"], 0.5, "rate_min must be <= rate_max"),
        (["kind"], "crypto_loan", "kind"),
        (["rules", 0, "op"], "~=", "rules.0.op"),
        (["rules", 0, "value"], "BB", None),  # still valid
        (["policy_tags"], [99], "policy_tags.0"),
        (["unknown_key"], 1, "unknown_key"),
        (["rules", 2, "value"], [1, 2], "rules.2"),
    ],
)
def test_bad_product_names_product_and_field(
    raw: dict, path: list, value: object, expect: str | None
) -> None:
    pid = raw["products"][0]["id"]
    data = _broken(raw, 0, path, value)
    if expect is None:
        catalog_from_dict(data, grades=GRADES)
        return
    with pytest.raises(ProductCatalogError) as exc:
        catalog_from_dict(data, grades=GRADES)
    assert pid in str(exc.value) and expect in str(exc.value)


def test_unknown_rule_field_and_grade_are_refused(raw: dict) -> None:
    pid = raw["products"][1]["id"]
    data = _broken(raw, 1, ["rules", 1, "field"], "years_in_business")
    with pytest.raises(ProductCatalogError, match=f"{pid}.*rules.1.field.*years_in_business"):
        catalog_from_dict(data, known_fields=load_catalog().names)
    data = _broken(raw, 1, ["rules", 0, "value"], "BBB-")
    with pytest.raises(ProductCatalogError, match=f"{pid}.*rules.0.value.*BBB-"):
        catalog_from_dict(data, grades=GRADES)


def test_loans_need_pricing_and_insurance_needs_cover(raw: dict) -> None:
    loan = next(i for i, p in enumerate(raw["products"]) if p["kind"] == "credit_loan")
    data = yaml.safe_load(yaml.safe_dump(raw))
    del data["products"][loan]["pricing"]
    with pytest.raises(ProductCatalogError, match="pricing: required"):
        catalog_from_dict(data)
    ins = next(i for i, p in enumerate(raw["products"]) if p["kind"] == "export_credit_insurance")
    data = yaml.safe_load(yaml.safe_dump(raw))
    del data["products"][ins]["insurance"]
    with pytest.raises(ProductCatalogError, match="insurance: required"):
        catalog_from_dict(data)


def test_duplicate_ids_and_unreadable_files(raw: dict, tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(raw))
    data["products"].append(data["products"][0])
    with pytest.raises(ProductCatalogError, match="unique"):
        catalog_from_dict(data)
    bad = tmp_path / "p.yaml"
    bad.write_text("products: [", encoding="utf-8")
    with pytest.raises(ProductCatalogError, match="not valid YAML"):
        load_products(bad)
    with pytest.raises(ProductCatalogError, match="cannot read"):
        load_products(tmp_path / "missing.yaml")


def test_service_market_validates_catalog_against_features(raw: dict, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from serving.market import load_market

    market = load_market(SimpleNamespace(products=None, pricing=None))
    assert len(market.products) == len(raw["products"]) and "USA" in market.countries
    data = _broken(raw, 2, ["rules", 0, "field"], "turnover_cny")
    bad = tmp_path / "products.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ProductCatalogError, match=r"turnover_cny"):
        load_market(SimpleNamespace(products=bad, pricing=None))


def test_settings_point_the_service_at_a_deployments_own_catalog(
    raw: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.market import load_market
    from serving.settings import Settings

    own = dict(raw, products=raw["products"][:-1])  # a deployment that drops one product
    path = tmp_path / "own-products.yaml"
    path.write_text(yaml.safe_dump(own, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("KUAXIN_PRODUCTS", str(path))
    market = load_market(Settings())
    assert len(market.products) == len(raw["products"]) - 1
    assert raw["products"][-1]["id"] not in market.products
