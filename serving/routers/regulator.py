"""Regulator aggregates: grade distribution, product coverage and the measure-19 simulation.

Only counts, shares and sums over the served snapshot leave these endpoints, never a firm's
record, so they need the regulator (or admin) role and no consent. Aggregates that do not
depend on the request are computed once per served snapshot.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query

from serving.auth import Principal
from serving.deps import LoadedDep, require_role
from serving.market import Market, MarketDep, grades_of
from serving.problems import field_error, problem_responses
from serving.schemas import Measure19CurveResponse, Measure19Response, OverviewResponse
from serving.state import Loaded
from tradefinance.regulator import (
    coverage_summary,
    eligibility_shares,
    grade_distribution,
    measure19,
    measure19_curve,
    measure19_tail,
)

router = APIRouter(prefix="/regulator", tags=["regulator"])

RegulatorKey = Annotated[Principal, Depends(require_role("regulator", "admin"))]

_cache_lock = threading.Lock()
_cache: dict[tuple[int, int], tuple[Loaded, Market, pd.DataFrame, dict[str, Any]]] = {}


def firm_frame(loaded: Loaded) -> pd.DataFrame:
    """Snapshot features joined with the precomputed scores, one row per firm."""
    scores = loaded.scores[["pd", "score", "grade", "supervision_class", "in_default"]]
    features = loaded.snapshot.drop(columns=[c for c in scores.columns if c in loaded.snapshot])
    return features.join(scores)


def _overview(loaded: Loaded, market: Market) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the frame and the request-independent aggregates, cached per (snapshot, market)."""
    key = (id(loaded), id(market))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] is loaded and hit[1] is market:
            return hit[2], hit[3]
    frame = firm_frame(loaded)
    grades = grades_of(loaded)
    overview = {
        "summary": coverage_summary(frame),
        "grades": grade_distribution(frame["grade"], grades),
        "products": eligibility_shares(frame, market.products, grades),
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
        "catalog_version": market.products.version,
    }
    with _cache_lock:
        _cache.clear()  # one served snapshot at a time
        _cache[key] = (loaded, market, frame, overview)
    return frame, overview


@router.get(
    "/overview", response_model=OverviewResponse, responses=problem_responses(401, 403, 503)
)
def overview(_: RegulatorKey, loaded: LoadedDep, market: MarketDep) -> dict[str, Any]:
    """Grade distribution and the share of firms eligible for each product."""
    return _overview(loaded, market)[1]


@router.get(
    "/measure19", response_model=Measure19Response, responses=problem_responses(401, 403, 422, 503)
)
def measure19_simulation(
    _: RegulatorKey,
    loaded: LoadedDep,
    market: MarketDep,
    product_id: Annotated[
        str | None, Query(description="insurance product; pricing.yaml's default when omitted")
    ] = None,
    min_grade: Annotated[str | None, Query(description="accept firms down to this grade")] = None,
    cover: Annotated[float | None, Query(gt=0, le=1, description="new cover percentage")] = None,
) -> dict[str, Any]:
    """If the insurer accepted lower grades or raised cover: firms gaining cover, expected loss change."""
    frame, _ov = _overview(loaded, market)
    # Scenarios move the grade floor over performing grades: a firm in default is never covered.
    grades = list(loaded.model.master_scale.grades)
    product_id = product_id or market.pricing.insurance.default_product
    if product_id not in market.products or market.products[product_id].insurance is None:
        names = ", ".join(p.id for p in market.products.insurance)
        raise field_error("query.product_id", f"not an insurance product: {product_id!r}", names)
    if min_grade is not None and min_grade not in grades:
        raise field_error("query.min_grade", f"unknown grade {min_grade!r}", ", ".join(grades))
    max_cover = market.pricing.insurance.max_cover
    if cover is not None and cover > max_cover:
        raise field_error("query.cover", f"{cover} is above the maximum", f"at most {max_cover}")
    result = measure19(
        frame,
        market.products,
        product_id=product_id,
        grades=grades,
        min_grade=min_grade,
        cover=cover,
        pricing=market.pricing,
    )
    return {**result, "model_version": loaded.model_version, "as_of": loaded.as_of}


@router.get(
    "/measure19/tail",
    response_model=Measure19CurveResponse,
    responses=problem_responses(401, 403, 422, 503),
)
def measure19_tail_curve(
    _: RegulatorKey,
    loaded: LoadedDep,
    market: MarketDep,
    product_id: Annotated[str | None, Query(description="insurance product")] = None,
    steps: Annotated[int | None, Query(ge=2, le=12, description="points on the curve")] = None,
    min_grade: Annotated[str | None, Query(description="detail: grade floor")] = None,
    cover: Annotated[float | None, Query(gt=0, le=1, description="detail: cover")] = None,
    limit_factor: Annotated[float, Query(ge=1, le=5, description="detail: buyer limits x")] = 1.0,
    premium_factor: Annotated[float, Query(gt=0, le=1, description="detail: premium x")] = 1.0,
) -> dict[str, Any]:
    """Measure 19 with the tail: newly covered firms and exports, EL, VaR/ES, claims ratio, headroom."""
    frame, _ov = _overview(loaded, market)
    grades = list(loaded.model.master_scale.grades)
    product_id = product_id or market.pricing.insurance.default_product
    if product_id not in market.products or market.products[product_id].insurance is None:
        names = ", ".join(p.id for p in market.products.insurance)
        raise field_error("query.product_id", f"not an insurance product: {product_id!r}", names)
    if min_grade is not None and min_grade not in grades:
        raise field_error("query.min_grade", f"unknown grade {min_grade!r}", ", ".join(grades))
    max_cover = market.pricing.insurance.max_cover
    if cover is not None and cover > max_cover:
        raise field_error("query.cover", f"{cover} is above the maximum", f"at most {max_cover}")
    curve = measure19_curve(
        frame,
        market.products,
        product_id=product_id,
        grades=grades,
        steps=steps,
        pricing=market.pricing,
    )
    tail = measure19_tail(
        frame,
        market.products,
        product_id=product_id,
        grades=grades,
        min_grade=min_grade,
        cover=cover,
        limit_factor=limit_factor,
        premium_factor=premium_factor,
        pricing=market.pricing,
    )
    return {
        "product_id": product_id,
        "level": tail["level"],
        "curve": curve.to_dict("records"),
        "tail": tail,
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
    }
