"""Products that institutions manage themselves: validation, versions, effective catalog.

The shipped YAML stays the seed catalog. A provider creates, updates and retires its own
products; each change is a new **version** with an effective date, validated exactly as the
YAML is (:func:`tradefinance.products.catalog_from_dict`). The catalog in force at a moment
takes, per product id, the latest version effective by then (a retirement removes the product),
over the seed. Applications keep the version they were frozen with, so later versions never
change their terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tradefinance.products import (
    INSURANCE_KINDS,
    Product,
    ProductCatalog,
    ProductCatalogError,
    catalog_from_dict,
)

#: Product kinds each provider role may publish.
KINDS_BY_ROLE = {"bank": "financing", "insurer": "insurance"}


@dataclass(frozen=True)
class Version:
    """One stored version of a provider's product.

    Attributes
    ----------
    product_id : str
    version : int
        1, 2, ... per product id (0 is the shipped seed).
    owner : str
        Institution that owns it (an API key's ``org``).
    spec : dict or None
        The product as in the YAML catalog; None for a retirement.
    effective_from : datetime
        Aware UTC time from which the version is in force.
    """

    product_id: str
    version: int
    owner: str
    spec: dict[str, Any] | None
    effective_from: datetime

    @property
    def retired(self) -> bool:
        """Whether this version retires the product."""
        return self.spec is None


class ProductSpecError(ValueError):
    """A product that does not validate; ``field`` is the dotted path of the first problem."""

    def __init__(self, field: str, message: str, expected: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.expected = field, message, expected


_WHERE = re.compile(r"product '[^']*': (?P<field>[^:]+): (?P<msg>.*)$", re.S)


def validate_spec(
    spec: Mapping[str, Any],
    *,
    role: str,
    known_fields: Iterable[str] | None,
    grades: Iterable[str] | None,
) -> Product:
    """Validate one product exactly as a YAML catalog entry, and its kind against the role.

    Parameters
    ----------
    spec : mapping
        The product (``id``, names, provider, kind, ranges, pricing or insurance, rules, ...).
    role : str
        ``bank`` (financing kinds) or ``insurer`` (insurance kinds).
    known_fields, grades : iterable of str, optional
        Rule fields and grades allowed (as when loading the catalog).

    Returns
    -------
    Product

    Raises
    ------
    ProductSpecError
        Naming the field (``body.product.<path>``) and what was expected.
    """
    try:
        catalog = catalog_from_dict(
            {"products": [dict(spec)]}, known_fields=known_fields, grades=grades, origin="body"
        )
    except ProductCatalogError as exc:
        m = _WHERE.search(str(exc))
        if m is None:
            raise ProductSpecError("body.product", str(exc)) from None
        field = m["field"].strip()
        field = "body.product" if field == "(product)" else f"body.product.{field}"
        raise ProductSpecError(field, m["msg"].strip()) from None
    product = catalog.products[0]
    wants = "insurance" if product.kind in INSURANCE_KINDS else "financing"
    if KINDS_BY_ROLE.get(role) != wants:
        raise ProductSpecError(
            "body.product.kind",
            f"a {role} may not publish {wants} products",
            f"a {KINDS_BY_ROLE.get(role, 'no')} kind",
        )
    return product


def latest(versions: Sequence[Version], product_id: str, at: datetime) -> Version | None:
    """Return the version of ``product_id`` in force at ``at`` (None: the seed or nothing)."""
    found = None
    for v in versions:
        in_force = v.product_id == product_id and v.effective_from <= at
        if in_force and (found is None or v.version > found.version):
            found = v
    return found


def effective_catalog(
    seed: ProductCatalog, versions: Sequence[Version], at: datetime
) -> ProductCatalog:
    """Return the catalog in force at ``at``: the seed, overridden and extended by versions.

    Seed products keep their place; new products follow in order of first version. Specs were
    validated when stored, so they are only parsed here.
    """
    if not versions:
        return seed
    ids = [p.id for p in seed] + sorted(
        {v.product_id for v in versions} - {p.id for p in seed},
        key=lambda pid: min(v.effective_from for v in versions if v.product_id == pid),
    )
    products: list[Product] = []
    for pid in ids:
        v = latest(versions, pid, at)
        if v is None:
            if pid in seed:
                products.append(seed[pid])
            continue
        if v.spec is not None:
            products.append(Product.model_validate(v.spec))
    return ProductCatalog(products, version=f"{seed.version}+{len(versions)}")


def owner(product_id: str, seed_owner: str | None, versions: Sequence[Version]) -> str | None:
    """Who owns a product: the owner of its stored versions, else of its seed entry."""
    for v in versions:
        if v.product_id == product_id:
            return v.owner
    return seed_owner
