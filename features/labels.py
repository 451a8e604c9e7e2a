"""How codes read to people: feature names, category values, rules, countries, in zh or en.

Everything a person sees comes from the one text catalog (:mod:`features.texts`) or the feature
catalog's descriptions; this module only puts them together, so domain code can hand out
language-neutral codes plus these texts. Keys it reads:

- ``<feature>.<value>`` for a category value (``district.baoan``, ``industry.apparel``,
  ``marketplace.amazon``, ``customs_credit.aeo``) and ``purpose_<value>`` for a need's purpose;
- ``yes`` / ``no`` for 0/1 features, ``op.<op>`` for comparisons, ``need.<field>`` and
  ``model.<output>`` for the fields that are not catalog features;
- ``country.<ISO3>``, ``oecd.category`` and ``oecd.HI`` for the OECD country-risk table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from features.catalog import Catalog, load_catalog
from features.texts import catalog as text_catalog
from features.texts import text


@lru_cache(maxsize=1)
def _shipped_catalog() -> Catalog:
    return load_catalog()


def _features(features: Catalog | None) -> Catalog:
    return features if features is not None else _shipped_catalog()


def has_text(key: str) -> bool:
    """Whether the text catalog has ``key``."""
    return key in text_catalog()


def feature_label(name: str, lang: str, features: Catalog | None = None) -> str:
    """Describe a rule field: a catalog feature's description, a need field, a model output."""
    if name.startswith("need.") and has_text(name):
        return text(name, lang)
    if has_text(f"model.{name}"):
        return text(f"model.{name}", lang)
    if name == "in_default":
        return text("rule.not_in_default", lang)
    cat = _features(features)
    if name in cat:
        spec = cat[name]
        return spec.description_zh if lang == "zh" else spec.description_en
    return name


def is_yes_no(name: str, features: Catalog | None = None) -> bool:
    """Whether a feature holds 0/1 (a yes/no fact)."""
    cat = _features(features)
    return name in cat and (cat[name].dtype == "bool" or cat[name].unit == "0/1")


def number(value: float) -> str:
    """Format a number as people read it: whole numbers without decimals, others to 4 significant."""
    if not math.isfinite(value):
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


#: Features whose category values share another field's labels (key ``<prefix>.<value>``).
VALUE_PREFIX = {"main_marketplace": "marketplace"}

#: Units whose values people read as whole numbers (money, counts, durations).
WHOLE_UNITS = frozenset(
    {
        "CNY",
        "USD",
        "months",
        "days",
        "years",
        "count",
        "cases",
        "loans",
        "orders",
        "persons",
        "stores",
        "policy years",
    }
)


def _to_unit(value: float, field: str, features: Catalog | None) -> float:
    """Round a value to its unit: whole money and counts, else 4 significant digits."""
    cat = _features(features)
    unit = cat[field].unit if field in cat else None
    if unit in WHOLE_UNITS or field in ("amount_cny", "tenor_months"):
        return float(round(value))
    return value


def value_label(name: str, value: Any, lang: str, features: Catalog | None = None) -> str:
    """Show one value of a rule field (category label, yes/no, or a rounded number).

    Parameters
    ----------
    name : str
        The field (catalog feature, ``need.<field>`` or model output).
    value : Any
        Its value (None or NaN for missing).
    lang : {"zh", "en"}
    features : Catalog, optional
        The feature catalog (the shipped one by default).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    field = name.removeprefix("need.")
    if isinstance(value, str) and value in ("yes", "no"):
        return text(value, lang)
    if isinstance(value, bool) or (is_yes_no(field, features) and value in (0, 1)):
        return text("yes" if bool(value) else "no", lang)
    if isinstance(value, int | float):
        return number(_to_unit(float(value), field, features))
    prefix = VALUE_PREFIX.get(field, field)
    key = f"purpose_{value}" if field == "purpose" else f"{prefix}.{value}"
    return text(key, lang) if has_text(key) else str(value)


def values_label(name: str, values: Any, lang: str, features: Catalog | None = None) -> str:
    """Show a rule's required value (a list for ``in`` / ``not_in``)."""
    if isinstance(values, Sequence) and not isinstance(values, str):
        sep = "、" if lang == "zh" else ", "
        return sep.join(value_label(name, v, lang, features) for v in values)
    return value_label(name, values, lang, features)


def rule_text(
    field: str, op: str, required: Any, lang: str, features: Catalog | None = None
) -> str:
    """Say a rule as a sentence, e.g. ``融资用途 属于 订单履约`` / ``Purpose of the financing one of ...``."""
    if field == "in_default":
        return text("rule.not_in_default", lang)
    return (
        f"{feature_label(field, lang, features)} {text(f'op.{op}', lang)} "
        f"{values_label(field, required, lang, features)}"
    )


def country_name(iso3: str, lang: str, fallback: str | None = None) -> str:
    """Name a country from ``country.<ISO3>`` (``fallback`` or the code when absent)."""
    key = f"country.{iso3}"
    return text(key, lang) if has_text(key) else (fallback or iso3)


def oecd_category_label(category: str | None, lang: str) -> str:
    """``经合组织第4类`` / ``OECD category 4``; high-income unclassified countries by name."""
    if category is None:
        return "–"
    if category == "HI":
        return text("oecd.HI", lang)
    return text("oecd.category", lang, category=category)


def shown_value(value: Any, spec: Any = None) -> Any:
    """Return a feature value as an answer shows it: float noise rounded off, within the bounds.

    ``1.0000000000000002`` (a share summed in floating point) becomes ``1.0``, so a form that
    takes the catalog's bounds (``max=1``) accepts the value it is prefilled with.

    Parameters
    ----------
    value : Any
        A JSON-friendly value (see :func:`features.values.plain`).
    spec : FeatureSpec, optional
        The catalog entry whose ``lower`` / ``upper`` bound the value.
    """
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return value
    out = float(f"{value:.12g}")
    if spec is not None:
        if spec.lower is not None:
            out = max(out, float(spec.lower))
        if spec.upper is not None:
            out = min(out, float(spec.upper))
    return out


def percent(share: float, digits: int = 0) -> str:
    """Format a share as a percentage, e.g. ``90%``."""
    return f"{share * 100:.{digits}f}%"
