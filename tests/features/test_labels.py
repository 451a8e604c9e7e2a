"""How codes read to people (features.labels): rules, values, countries, rounding."""

from __future__ import annotations

from features.catalog import load_catalog
from features.labels import (
    country_name,
    oecd_category_label,
    rule_text,
    shown_value,
    value_label,
)


def test_values_read_as_words_and_rounded_numbers() -> None:
    assert value_label("district", "baoan", "zh") == "宝安区"
    assert value_label("main_marketplace", "amazon", "zh") == "亚马逊"
    assert value_label("dishonest_listed", 0, "zh") == "否"
    assert value_label("dishonest_listed", 1.0, "en") == "yes"
    assert value_label("firm_age_months", 70.57, "zh") == "71"  # months are whole
    assert value_label("exports_12m_usd", 9775640.4, "en") == "9,775,640"
    assert value_label("need.purpose", "order_fulfilment", "zh") == "订单履约"
    assert value_label("tax_grade", "A", "zh") == "A"  # a code stays a code
    assert value_label("refund_rate_6m", None, "zh") == "–"


def test_rules_read_as_sentences() -> None:
    assert rule_text("need.purpose", "in", ["order_fulfilment"], "zh") == "融资用途 属于 订单履约"
    zh = rule_text("store_age_months", ">=", 6, "zh")
    assert "store_age_months" not in zh and zh.endswith("不低于 6")
    assert rule_text("grade", ">=", "BB", "en") == "Credit grade at least BB"


def test_countries_and_oecd_categories() -> None:
    assert country_name("RUS", "zh") == "俄罗斯"
    assert country_name("XYZ", "zh", "Nowhere") == "Nowhere"
    assert oecd_category_label("HI", "zh") == "高收入国家（未分类）"
    assert oecd_category_label("4", "en") == "OECD category 4"


def test_shown_values_lose_float_noise_and_stay_in_bounds() -> None:
    spec = load_catalog()["share_9810_12m"]
    assert spec.upper == 1.0
    assert shown_value(1.0000000000000002, spec) == 1.0
    assert shown_value(0.30000000000000004) == 0.3
    assert shown_value(-1e-18, spec) == 0.0
    assert shown_value("baoan", spec) == "baoan" and shown_value(None) is None
