"""The market data an app serves (product catalog, pricing parameters, country table) as a
dependency, and the firm row matching and quotes read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Request

from features.values import plain
from serving.state import Loaded
from tradefinance.insurance import CountryTable, load_country_table
from tradefinance.pricing import PricingConfig, load_pricing_config
from tradefinance.products import ProductCatalog, load_products

# ---------------------------------------------------------------------------------------------
# Market data (catalog, pricing, countries): loaded once per app
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """The product catalog, pricing parameters and country table the app serves."""

    products: ProductCatalog
    pricing: PricingConfig
    countries: CountryTable


_market_lock = threading.Lock()


def load_market(settings: Any = None) -> Market:
    """Load and validate the product catalog, pricing parameters and country table.

    Paths come from ``settings.products`` / ``settings.pricing`` when the settings define them
    (``KUAXIN_PRODUCTS`` / ``KUAXIN_PRICING``), else the shipped files. Rule fields are checked
    against the feature catalog and grade values against the master scale.

    Raises
    ------
    tradefinance.products.ProductCatalogError, pydantic.ValidationError, CountryTableError
        Naming the product (or parameter) and field that are wrong.
    """
    products = getattr(settings, "products", None)
    pricing = getattr(settings, "pricing", None)
    return _load_market(
        None if products is None else str(products), None if pricing is None else str(pricing)
    )


@lru_cache(maxsize=8)
def _load_market(products_path: str | None, pricing_path: str | None) -> Market:
    """Load once per pair of files (every app of a process shares the immutable result)."""
    from features.catalog import load_catalog
    from training.scale import default_scales

    pricing = load_pricing_config(pricing_path)
    products = load_products(
        products_path, known_fields=load_catalog().names, grades=default_scales()[1].grades
    )
    return Market(
        products=products,
        pricing=pricing,
        countries=load_country_table(ref=pricing.insurance.country_table),
    )


def get_market(request: Request) -> Market:
    """Return the app's market data (loaded at start-up by :func:`register`)."""
    market = getattr(request.app.state, "market", None)
    if market is None:
        with _market_lock:
            market = getattr(request.app.state, "market", None)
            if market is None:
                market = load_market(getattr(request.app.state, "settings", None))
                request.app.state.market = market
    return market


MarketDep = Annotated[Market, Depends(get_market)]


def firm_row(loaded: Loaded, usc_code: str) -> dict[str, Any]:
    """One firm's features and model outputs as a plain dict (precomputed scores)."""
    i = loaded.position[usc_code]
    row = {k: plain(v) for k, v in loaded.snapshot.iloc[i].items()}
    s = loaded.scores.iloc[i]
    row.update(
        pd=float(s["pd"]),
        score=plain(s["score"]),
        grade=str(s["grade"]),
        supervision_class=str(s["supervision_class"]),
        in_default=bool(s["in_default"]),
    )
    return row


def grades_of(loaded: Loaded) -> list[str]:
    """Grades the service serves, best first: the master scale, then the default grade (D)."""
    return loaded.grades


# ---------------------------------------------------------------------------------------------
# The catalog in force: the seed YAML plus the versions providers manage through the API
# ---------------------------------------------------------------------------------------------


def product_versions(session: Any) -> list[Any]:
    """Every stored provider product version (``tradefinance.product_versions.Version``)."""
    import json

    import sqlalchemy as sa

    from serving.models import ProductVersionRow
    from tradefinance.product_versions import Version

    rows = session.scalars(sa.select(ProductVersionRow).order_by(ProductVersionRow.id))
    return [
        Version(
            product_id=r.product_id,
            version=r.version,
            owner=r.owner_org,
            spec=None if r.spec is None else json.loads(r.spec),
            effective_from=as_utc(r.effective_from),
        )
        for r in rows
    ]


def as_utc(ts: Any) -> Any:
    """Return ``ts`` as an aware UTC time."""
    from datetime import UTC

    # SQLite hands timestamps back without a zone; every stored time is UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def effective_products(session: Any, market: Market, at: Any = None) -> ProductCatalog:
    """Return the catalog in force now (or at ``at``): seed YAML overridden by stored versions.

    Without stored versions this is ``market.products`` itself (no copy, no parsing).
    """
    from datetime import UTC, datetime

    from tradefinance.product_versions import effective_catalog

    return effective_catalog(market.products, product_versions(session), at or datetime.now(UTC))
