"""The feature catalog: validation, texts, derived constraints, and agreement with the data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pit_world import make_world

from features import tables
from features.catalog import (
    Catalog,
    CatalogError,
    catalog_from_dict,
    direction_check,
    load_catalog,
)
from features.snapshot import ID_COLUMNS, build_snapshot

CATALOG = load_catalog()
REQUIRED = {
    "firm_age_months": "float",
    "registered_capital_cny": "float",
    "industry": "category",
    "district": "category",
    "tax_grade": "category",
    "rebate_class": "int",
    "exports_12m_usd": "float",
    "exports_3m_usd": "float",
    "export_growth_12m": "float",
    "fx_receipt_ratio_12m": "float",
    "fx_class": "category",
    "customs_credit": "category",
    "dishonest_listed": "bool",
    "enforcement_open": "int",
    "max_dpd_12m": "int",
    "current_dpd": "int",
    "loans_outstanding_cny": "float",
    "gmv_6m_usd": "float",
    "refund_rate_6m": "float",
    "store_rating": "float",
    "stores_suspended": "int",
    "store_age_months": "int",
    "overseas_stock_usd": "float",
    "stock_cover_days": "float",
    "high_risk_destination_share": "float",
    "insured": "bool",
    "insured_turnover_usd": "float",
    "headcount": "int",
    "penalties_24m": "int",
}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _entry(**over: object) -> dict:
    base = CATALOG["exports_12m_usd"].model_dump()
    base.update(over)
    return base


def test_size_families_and_required_names() -> None:
    assert 60 <= len(CATALOG) <= 130
    for name, dtype in REQUIRED.items():
        assert CATALOG[name].dtype == dtype, name
    families = {f.family for f in CATALOG}
    assert {
        "firm",
        "tax",
        "customs",
        "fx",
        "marketplace",
        "warehouse",
        "loans",
        "courts",
        "penalties",
        "insurance",
        "social_insurance",
        "utilities",
        "buyers",
        "macro",
    } <= families


def test_every_feature_has_both_languages() -> None:
    for f in CATALOG:
        assert CJK.search(f.description_zh) and CJK.search(f.reason_zh), f.name
        assert not CJK.search(f.description_en) and not CJK.search(f.reason_en), f.name
        assert f.unit.strip(), f.name


def test_categories_are_the_tables_allowed_values() -> None:
    expected = {
        "industry": tables.INDUSTRIES,
        "district": tables.DISTRICTS,
        "main_marketplace": tables.MARKETPLACES,
        "tax_grade": tables.TAX_GRADES,
        "fx_class": tables.FX_CLASSES,
        "customs_credit": tables.CUSTOMS_CREDIT,
    }
    assert set(CATALOG.categorical) == set(expected)
    for name, allowed in expected.items():
        assert CATALOG[name].categories == list(allowed)


def test_monotone_constraints_and_lists() -> None:
    names = ["exports_12m_usd", "max_dpd_12m", "industry", "share_9610_12m"]
    assert CATALOG.monotone_constraints(names) == [-1, 1, 0, 0]
    assert len(CATALOG.monotone_constraints()) == len(CATALOG)
    assert "tax_grade" in CATALOG.actionable and "firm_age_months" not in CATALOG.actionable
    assert set(CATALOG.numeric) | set(CATALOG.categorical) == set(CATALOG.names)
    with pytest.raises(KeyError, match="nope"):
        CATALOG["nope"]


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.to_yaml(), encoding="utf-8")
    again = load_catalog(path)
    assert again == CATALOG
    assert again.names == CATALOG.names


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(direction="up"), "direction"),
        (_entry(source="nowhere"), "source"),
        (_entry(dtype="category"), "categories"),
        (_entry(colour="red"), "colour"),
        (_entry(reason_zh=" "), "reason_zh"),
        (_entry(lower=5.0, upper=1.0), "lower"),
        (_entry(name="Bad Name"), "name"),
    ],
)
def test_bad_entries_are_refused_naming_the_field(entry: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        catalog_from_dict({"features": [entry]})


def test_duplicates_and_bad_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="duplicated"):
        catalog_from_dict({"features": [_entry(), _entry()]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("features: 3\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="features"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")


def test_shipped_yaml_is_what_load_reads() -> None:
    raw = yaml.safe_load(Path("features/config/catalog.yaml").read_text(encoding="utf-8"))
    assert [f["name"] for f in raw["features"]] == CATALOG.names


def _check_snapshot_against_catalog(snap: pd.DataFrame, catalog: Catalog) -> None:
    """Every column described, every description used, dtypes and bounds as catalogued."""
    assert list(snap.columns) == ID_COLUMNS + catalog.names
    for f in catalog:
        col = snap[f.name]
        if f.dtype == "category":
            assert isinstance(col.dtype, pd.CategoricalDtype), f.name
            assert list(col.cat.categories) == f.categories, f.name
            continue
        assert col.dtype == np.float64, f.name
        v = col.dropna().to_numpy()
        if f.dtype in ("int", "bool"):
            assert np.all(v == np.round(v)), f.name
        if f.dtype == "bool":
            assert set(np.unique(v)) <= {0.0, 1.0}, f.name
        if f.lower is not None:
            assert np.all(v >= f.lower - 1e-9), (f.name, v.min())
        if f.upper is not None:
            assert np.all(v <= f.upper + 1e-9), (f.name, v.max())


def test_snapshot_of_hand_built_world_matches_catalog() -> None:
    _check_snapshot_against_catalog(
        build_snapshot(make_world(25, seed=2), pd.Timestamp("2023-05-20").date()), CATALOG
    )


def test_snapshot_of_simulated_world_matches_catalog(snapshot: pd.DataFrame) -> None:
    _check_snapshot_against_catalog(snapshot, CATALOG)
    # every numeric feature takes more than one value somewhere (no dead feature) in the
    # snapshot, except the default-event ones and the insurance claims and restructurings that
    # are rare by construction; the macro features are one value per date for every firm
    numeric = snapshot[CATALOG.numeric]
    dead = [c for c in numeric if numeric[c].nunique(dropna=True) < 2]
    macro = {f.name for f in CATALOG if f.family == "macro"}
    assert macro
    assert set(dead) <= {
        "customs_credit_downgrades_24m",
        "enforcement_amount_open_cny",
        "enforcement_open",
        "dishonest_listed",
        "claims_paid_24m_usd",
        "claims_notified_24m",
        "claims_pending",
        "restructured_24m",
        *macro,
    }, dead


def test_training_set_matches_catalog(train_dataset: pd.DataFrame) -> None:
    snap_like = train_dataset.drop(columns=["label", "default_date"])
    _check_snapshot_against_catalog(snap_like, CATALOG)
    # over many dates the rare and the per-date features do move
    for name in ("restructured_24m", "macro_export_orders_pmi", "macro_freight_cost_index"):
        assert train_dataset[name].nunique(dropna=True) > 1, name


def test_directions_agree_with_simulated_default_rates_or_are_explained(
    train_dataset: pd.DataFrame,
) -> None:
    check = direction_check(train_dataset, CATALOG)
    assert len(check) == sum(f.direction != "none" for f in CATALOG)
    confirmed = check[check["observed"] == check["direction"]]
    assert len(confirmed) >= len(check) / 2, "most directions should be confirmed by the data"
    for row in check[~check["agrees"]].itertuples():
        note = CATALOG[row.feature].note.lower()
        assert "direction check" in note, (
            f"{row.feature}: catalog says {row.direction}, simulated default rates by decile "
            f"{row.rates} (rho {row.rho:.3f}) disagree; explain it in the catalog note"
        )
    # a note that claims a disagreement must still hold for the data it describes
    disagreeing = set(check.loc[~check["agrees"], "feature"])
    claimed = {f.name for f in CATALOG if "disagrees with the direction check" in f.note.lower()}
    assert claimed <= disagreeing | set(check.loc[check["observed"] == "flat", "feature"])
