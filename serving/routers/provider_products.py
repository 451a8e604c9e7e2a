"""Institutions manage their own products: create, update (a new version) and retire.

Each product is validated exactly as an entry of the shipped YAML catalog (rule fields against
the feature catalog, grades against the master scale); a bank publishes financing kinds, an
insurer insurance kinds. Every change is a new version with an effective date; applications keep
the version they were frozen with. A provider touches only its own products (403 otherwise).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from serving.applications import config_for, now_utc, product_owner
from serving.auth import Principal
from serving.deps import DbSession, SettingsDep, require_role
from serving.market import MarketDep, as_utc, effective_products
from serving.models import ProductVersionRow
from serving.problems import ProblemError, field_error, problem_responses
from tradefinance.product_versions import ProductSpecError, validate_spec

router = APIRouter(prefix="/provider/products", tags=["provider: products"])

ProviderKey = Annotated[Principal, Depends(require_role("bank", "insurer"))]


class ProductRequest(BaseModel):
    """A product as in ``tradefinance/config/products.yaml`` and when it takes effect."""

    model_config = ConfigDict(extra="forbid")

    product: dict[str, Any] = Field(
        description="one catalog entry (id, names, provider, kind, ...)"
    )
    effective_from: AwareDatetime | None = Field(
        default=None, description="when this version takes effect (default: now)"
    )


def _validate(body: ProductRequest, principal: Principal, market: Any) -> Any:
    from features.catalog import load_catalog
    from training.scale import default_scales

    try:
        return validate_spec(
            body.product,
            role=principal.role,
            known_fields=load_catalog().names,
            grades=default_scales()[1].grades,
        )
    except ProductSpecError as exc:
        raise field_error(exc.field, exc.message, exc.expected) from exc


def _versions_of(session: DbSession, product_id: str) -> list[ProductVersionRow]:
    return list(
        session.scalars(
            sa.select(ProductVersionRow)
            .where(ProductVersionRow.product_id == product_id)
            .order_by(ProductVersionRow.version)
        )
    )


def _row_out(row: ProductVersionRow) -> dict[str, Any]:
    return {
        "product_id": row.product_id,
        "version": row.version,
        "owner_org": row.owner_org,
        "retired": row.spec is None,
        "product": None if row.spec is None else json.loads(row.spec),
        "effective_from": as_utc(row.effective_from),
        "created_at": as_utc(row.created_at),
    }


def _store(
    session: DbSession,
    principal: Principal,
    product_id: str,
    spec: dict[str, Any] | None,
    effective: datetime | None,
) -> dict[str, Any]:
    versions = _versions_of(session, product_id)
    at = now_utc()
    row = ProductVersionRow(
        product_id=product_id,
        version=(versions[-1].version if versions else 0) + 1,
        owner_org=principal.org,
        spec=None if spec is None else json.dumps(spec, sort_keys=True, ensure_ascii=False),
        effective_from=effective or at,
        created_at=at,
        created_by=principal.key_id,
    )
    session.add(row)
    session.commit()
    return _row_out(row)


def _owned(
    session: DbSession, market: Any, settings: Any, principal: Principal, product_id: str
) -> None:
    owner = product_owner(session, market, product_id, config_for(settings))
    if owner is None:
        raise ProblemError(404, f"no product {product_id!r}")
    if owner != principal.org:
        raise ProblemError(403, f"product {product_id!r} belongs to {owner}, not {principal.org}")


@router.get("", responses=problem_responses(401, 403))
def my_products(
    principal: ProviderKey, session: DbSession, market: MarketDep, settings: SettingsDep
) -> dict[str, Any]:
    """List the caller's products in force now (seed and its own versions)."""
    cfg = config_for(settings)
    catalog = effective_products(session, market)
    mine = [p for p in catalog if product_owner(session, market, p.id, cfg) == principal.org]
    return {
        "org": principal.org,
        "catalog_version": catalog.version,
        "products": [p.summary() for p in mine],
    }


@router.post("", status_code=201, responses=problem_responses(401, 403, 409, 422))
def create_product(
    body: ProductRequest,
    principal: ProviderKey,
    session: DbSession,
    market: MarketDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Create a product (validated as the YAML catalog is); its id must be new."""
    product = _validate(body, principal, market)
    if product.id in market.products or _versions_of(session, product.id):
        raise ProblemError(
            409,
            f"product {product.id!r} exists; update it with PUT /v1/provider/products/{product.id}",
        )
    return _store(
        session, principal, product.id, product.model_dump(mode="json"), body.effective_from
    )


@router.put("/{product_id}", responses=problem_responses(401, 403, 404, 422))
def update_product(
    product_id: str,
    body: ProductRequest,
    principal: ProviderKey,
    session: DbSession,
    market: MarketDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Store a new version of one of the caller's products, in force from ``effective_from``."""
    _owned(session, market, settings, principal, product_id)
    product = _validate(body, principal, market)
    if product.id != product_id:
        raise field_error(
            "body.product.id", f"must be the product of the path, {product_id!r}", product_id
        )
    return _store(
        session, principal, product_id, product.model_dump(mode="json"), body.effective_from
    )


@router.delete("/{product_id}", responses=problem_responses(401, 403, 404))
def retire_product(
    product_id: str,
    principal: ProviderKey,
    session: DbSession,
    market: MarketDep,
    settings: SettingsDep,
    effective_from: Annotated[
        AwareDatetime | None, Query(description="when it stops (default: now)")
    ] = None,
) -> dict[str, Any]:
    """Retire one of the caller's products (no new applications; frozen ones keep their terms)."""
    _owned(session, market, settings, principal, product_id)
    return _store(session, principal, product_id, None, effective_from)


@router.get("/{product_id}/versions", responses=problem_responses(401, 403, 404))
def product_history(
    product_id: str,
    principal: ProviderKey,
    session: DbSession,
    market: MarketDep,
    settings: SettingsDep,
) -> list[dict[str, Any]]:
    """Every stored version of one of the caller's products (version 0, the seed, is the YAML)."""
    _owned(session, market, settings, principal, product_id)
    return [_row_out(r) for r in _versions_of(session, product_id)]
