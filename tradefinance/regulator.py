"""Aggregates for the regulator: grade distribution, product coverage, measure-19 simulation.

Nothing here returns a single firm's data: every output is a count, a share or a sum over the
snapshot.

Measure 19 asks insurers to loosen underwriting and widen cover. :func:`measure19` answers "if
the insurer accepted firms down to a lower grade, or raised its cover percentage, how many more
firms would be covered, how many more would then qualify for policy financing, and how would the
insurer's expected loss change". Expected loss on a firm's insured turnover is::

    exposure x cover x (buyer loss rate + exporter PD x exporter loss share)

with ``exposure = exports_12m_usd x insurable share`` (parameters in ``pricing.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tradefinance.insurance import load_country_table
from tradefinance.insurer_config import InsurerConfig, load_insurer_config
from tradefinance.portfolio import buyer_positions, simulate_losses
from tradefinance.pricing import PricingConfig, load_pricing_config, premium_rate
from tradefinance.products import Product, ProductCatalog, Rule
from tradefinance.rules import eligible_mask


def grade_distribution(grades: pd.Series, order: Sequence[str]) -> list[dict[str, Any]]:
    """Count and share of firms per grade, in master-scale order (best first).

    Firms in default are counted under their own grade (D) when ``order`` ends with it (the
    service passes the master scale followed by the default grade).

    Parameters
    ----------
    grades : Series of str
        One grade per firm.
    order : sequence of str
        Master-scale grades, best first (then the default grade).

    Returns
    -------
    list of dict
        ``{grade, count, share}`` for every grade (zero counts included).
    """
    counts = grades.astype("string").value_counts()
    unknown = sorted(set(counts.index) - set(order))
    if unknown:
        raise ValueError(f"grades must be on the master scale {list(order)}; got {unknown}")
    n = int(counts.sum())
    return [
        {
            "grade": g,
            "count": int(counts.get(g, 0)),
            "share": float(counts.get(g, 0)) / n if n else 0.0,
        }
        for g in order
    ]


def eligibility_shares(
    frame: pd.DataFrame, catalog: ProductCatalog, grades: Sequence[str]
) -> list[dict[str, Any]]:
    """Share of firms passing each product's firm and model rules (no particular need).

    For products that accept an assigned policy, ``eligible_with_policy`` counts firms that
    would pass if an insurance policy were assigned (``insured = 1``).

    Parameters
    ----------
    frame : DataFrame
        One row per firm: features plus ``pd`` and ``grade``.
    catalog : ProductCatalog
    grades : sequence of str

    Returns
    -------
    list of dict
    """
    n = len(frame)
    out = []
    for p in catalog:
        mask = eligible_mask(p, frame, grades)
        row: dict[str, Any] = {
            "product_id": p.id,
            "name_en": p.name_en,
            "name_zh": p.name_zh,
            "kind": p.kind,
            "policy_tags": list(p.policy_tags),
            "firms": n,
            "eligible": int(mask.sum()),
            "share": float(mask.mean()) if n else 0.0,
        }
        if p.policy_assignment:
            with_policy = eligible_mask(p, frame, grades, overrides={"insured": 1})
            row["eligible_with_policy"] = int(with_policy.sum())
        out.append(row)
    return out


def _relaxed(product: Product, min_grade: str | None) -> Product:
    """Return the product with its grade floor moved to ``min_grade`` (added if it had none)."""
    if min_grade is None:
        return product
    rules = [r for r in product.rules if not (r.field == "grade" and r.op == ">=")]
    rules.append(Rule(field="grade", op=">=", value=min_grade))
    return product.model_copy(update={"rules": rules})


def expected_loss(
    frame: pd.DataFrame, covered: pd.Series, cover: float, pricing: PricingConfig
) -> tuple[float, float]:
    """Insured exposure and insurer expected loss (USD/year) over the covered firms."""
    s = pricing.simulation
    exports = pd.to_numeric(frame["exports_12m_usd"], errors="coerce").fillna(0.0).clip(lower=0)
    exposure = exports * s.insurable_share * covered.astype(float)
    loss_rate = s.buyer_loss_rate + frame["pd"].astype(float) * s.exporter_loss_share
    return float(exposure.sum()), float((exposure * cover * loss_rate).sum())


def measure19(
    frame: pd.DataFrame,
    catalog: ProductCatalog,
    *,
    product_id: str,
    grades: Sequence[str],
    min_grade: str | None = None,
    cover: float | None = None,
    pricing: PricingConfig | None = None,
) -> dict[str, Any]:
    """Simulate loosening an insurance product's underwriting (measure 19).

    Parameters
    ----------
    frame : DataFrame
        One row per firm: features plus ``pd`` and ``grade``.
    catalog : ProductCatalog
    product_id : str
        An insurance product.
    grades : sequence of str
        Master-scale grades, best first.
    min_grade : str, optional
        Accept firms down to this grade (replaces the product's grade floor).
    cover : float, optional
        New cover percentage (fraction); the product's default when omitted.
    pricing : PricingConfig, optional

    Returns
    -------
    dict
        ``baseline`` and ``scenario`` (covered firms, insured exposure, expected loss, loss
        rate), ``gained_firms``, ``lost_firms``, ``gained_by_grade``, ``expected_loss_change``,
        and for each financing product that accepts a policy the firms that newly qualify.

    Raises
    ------
    ValueError
        Naming the bad parameter.
    """
    cfg = pricing or load_pricing_config()
    if product_id not in catalog:
        raise ValueError(f"product_id must be an insurance product id; got {product_id!r}")
    product = catalog[product_id]
    if product.insurance is None:
        raise ValueError(
            f"product_id must be an insurance product; {product_id!r} is {product.kind}"
        )
    if min_grade is not None and min_grade not in grades:
        raise ValueError(f"min_grade must be one of {list(grades)}; got {min_grade!r}")
    base_cover = product.insurance.cover_default
    new_cover = base_cover if cover is None else cover
    if not 0 < new_cover <= cfg.insurance.max_cover:
        raise ValueError(f"cover must be in (0, {cfg.insurance.max_cover}]; got {new_cover}")

    before = eligible_mask(product, frame, grades)
    after = eligible_mask(_relaxed(product, min_grade), frame, grades)
    exp_b, el_b = expected_loss(frame, before, base_cover, cfg)
    exp_a, el_a = expected_loss(frame, after, new_cover, cfg)
    gained = after & ~before
    lost = before & ~after

    unlocked = []
    for fin in catalog.financing:
        if not fin.policy_assignment:
            continue
        with_policy = eligible_mask(fin, frame, grades, overrides={"insured": 1})
        unlocked.append(
            {
                "product_id": fin.id,
                "name_en": fin.name_en,
                "name_zh": fin.name_zh,
                "baseline": int((with_policy & before).sum()),
                "scenario": int((with_policy & after).sum()),
            }
        )

    def side(mask: pd.Series, exposure: float, el: float, cov: float) -> dict[str, Any]:
        return {
            "covered_firms": int(mask.sum()),
            "covered_share": float(mask.mean()) if len(mask) else 0.0,
            "cover": cov,
            "insured_exposure_usd": exposure,
            "expected_loss_usd": el,
            "expected_loss_rate": el / exposure if exposure > 0 else 0.0,
        }

    by_grade = frame.loc[gained, "grade"].astype("string").value_counts()
    return {
        "product_id": product_id,
        "firms": len(frame),
        "min_grade": min_grade,
        "baseline": side(before, exp_b, el_b, base_cover),
        "scenario": side(after, exp_a, el_a, new_cover),
        "gained_firms": int(gained.sum()),
        "lost_firms": int(lost.sum()),
        "gained_by_grade": {g: int(by_grade.get(g, 0)) for g in grades if by_grade.get(g, 0)},
        "expected_loss_change_usd": el_a - el_b,
        "financing_unlocked": unlocked,
    }


def measure19_sweep(
    frame: pd.DataFrame,
    catalog: ProductCatalog,
    *,
    product_id: str,
    grades: Sequence[str],
    covers: Sequence[float | None] = (None,),
    pricing: PricingConfig | None = None,
) -> pd.DataFrame:
    """:func:`measure19` for every grade floor x cover: one row per scenario (for charts)."""
    rows = []
    for g in grades:
        for c in covers:
            r = measure19(
                frame,
                catalog,
                product_id=product_id,
                grades=grades,
                min_grade=g,
                cover=c,
                pricing=pricing,
            )
            rows.append(
                {
                    "min_grade": g,
                    "cover": r["scenario"]["cover"],
                    "covered_firms": r["scenario"]["covered_firms"],
                    "gained_firms": r["gained_firms"],
                    "expected_loss_usd": r["scenario"]["expected_loss_usd"],
                    "expected_loss_rate": r["scenario"]["expected_loss_rate"],
                    "expected_loss_change_usd": r["expected_loss_change_usd"],
                }
            )
    return pd.DataFrame(rows)


def coverage_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers: firms, firms in default, mean PD, share insured, share with exports.

    The mean and median PD are over performing firms (a firm in default has PD 1 by
    definition and is counted in ``in_default_firms`` instead).
    """
    exports = pd.to_numeric(frame.get("exports_12m_usd"), errors="coerce")
    insured = pd.to_numeric(frame.get("insured"), errors="coerce")
    if "in_default" in frame.columns:
        defaulted = frame["in_default"].fillna(False).astype(bool)
    else:
        defaulted = pd.Series(False, index=frame.index)
    performing = frame.loc[~defaulted, "pd"].astype(float)
    return {
        "firms": len(frame),
        "in_default_firms": int(defaulted.sum()),
        "in_default_share": float(defaulted.mean()) if len(frame) else 0.0,
        "mean_pd": float(performing.mean()) if len(performing) else 0.0,
        "median_pd": float(performing.median()) if len(performing) else 0.0,
        "insured_share": float(np.nanmean(insured)) if insured is not None and len(frame) else 0.0,
        "exporting_share": float((exports > 0).mean())
        if exports is not None and len(frame)
        else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# Measure 19 with the tail
# ---------------------------------------------------------------------------------------------


def _grade_floor(product: Product, grades: Sequence[str]) -> str:
    """Return the product's own grade floor (its ``grade >=`` rule), the best grade when it has none."""
    floor = next((r.value for r in product.rules if r.field == "grade" and r.op == ">="), None)
    return str(floor) if floor in grades else grades[0]


def _firm_rates(
    frame: pd.DataFrame, cover: float, product: Product, cfg: PricingConfig
) -> pd.Series:
    """Premium rate per firm on the default shipment, by its exporter grade (NaN if unpriced)."""
    p, ship = cfg.insurance, cfg.default_shipment
    assert product.insurance is not None
    category = load_country_table(ref=p.country_table).lookup(ship.buyer_country).category
    by_grade = {
        g: premium_rate(
            country_category=category,
            buyer_grade=ship.buyer_grade,
            terms=ship.terms,
            credit_days=ship.credit_days,
            cover=cover,
            exporter_grade=g,
            product_factor=product.insurance.product_factor,
            params=p,
        ).rate
        for g in p.exporter_grade_factor
    }
    return frame["grade"].astype("string").map(by_grade).astype(float)


def firm_book(
    frame: pd.DataFrame,
    covered: pd.Series,
    cover: float,
    *,
    limit_factor: float = 1.0,
    pricing: PricingConfig | None = None,
    insurer: InsurerConfig | None = None,
) -> pd.DataFrame:
    """Covered firms' insured turnover as portfolio positions (one per firm, every firm kept).

    Insured exposure = exports x min(insurable share x limit factor, 1) for covered firms, 0
    otherwise (so books of different loosenings share positions and random numbers). PD is
    ``(buyer loss rate + exporter PD x exporter loss share) / lgd`` so that the position's
    expected loss equals :func:`expected_loss`'s; all positions share one country factor.
    """
    cfg = pricing or load_pricing_config()
    ins = insurer or load_insurer_config()
    s, lgd = cfg.simulation, ins.portfolio.lgd
    exports = pd.to_numeric(frame["exports_12m_usd"], errors="coerce").fillna(0.0).clip(lower=0)
    share = min(s.insurable_share * limit_factor, 1.0)
    loss_rate = s.buyer_loss_rate + frame["pd"].astype(float).clip(0, 1) * s.exporter_loss_share
    return pd.DataFrame(
        {
            "buyer_id": frame["usc_code"] if "usc_code" in frame else frame.index.astype(str),
            "exposure_usd": (exports * share * covered.astype(float)).to_numpy(),
            "cover": cover,
            "pd": (loss_rate / lgd).clip(1e-6, 1 - 1e-6).to_numpy(),
            "country_iso3": "exporters",
        }
    )


def measure19_tail(
    frame: pd.DataFrame,
    catalog: ProductCatalog,
    *,
    product_id: str,
    grades: Sequence[str],
    min_grade: str | None = None,
    cover: float | None = None,
    limit_factor: float = 1.0,
    premium_factor: float = 1.0,
    pricing: PricingConfig | None = None,
    insurer: InsurerConfig | None = None,
    scenarios: int | None = None,
) -> dict[str, Any]:
    """Measure 19 with the tail: :func:`measure19` plus premium, claims ratio, VaR/ES, headroom.

    Both books are simulated with the same seed over the same positions (common random
    numbers), so a looser book's loss is at least the stricter one's in every scenario.
    ``cover_under_baseline_var_usd`` is the scenario book scaled (same mix) until its VaR equals
    the baseline's -- losses scale linearly with exposure at a fixed mix -- and
    ``extra_cover_under_same_var_usd`` what that adds to the baseline's insured exposure.

    Parameters
    ----------
    frame, catalog, product_id, grades, min_grade, cover, pricing
        As for :func:`measure19`.
    limit_factor : float
        Buyer limits raised by this factor (more of each firm's turnover insurable).
    premium_factor : float
        Premium rates multiplied by this factor (a cut is < 1).
    insurer : InsurerConfig, optional
    scenarios : int, optional
        Monte Carlo scenarios; ``insurer.yaml`` ``measure19.scenarios`` when omitted.

    Returns
    -------
    dict
        :func:`measure19`'s result; ``baseline``/``scenario`` gain ``premium_usd``,
        ``claims_ratio`` (expected: EL / premium), ``var_usd``, ``es_usd``, ``exports_covered_usd``;
        plus ``newly_covered_exports_usd``, ``level``, the two headroom figures.
    """
    if limit_factor < 1 or premium_factor <= 0:
        raise ValueError("limit_factor must be >= 1 and premium_factor > 0")
    cfg = pricing or load_pricing_config()
    ins = insurer or load_insurer_config()
    base = measure19(
        frame,
        catalog,
        product_id=product_id,
        grades=grades,
        min_grade=min_grade,
        cover=cover,
        pricing=cfg,
    )
    product = catalog[product_id]
    relaxed = _relaxed(product, min_grade)
    masks = {
        "baseline": eligible_mask(product, frame, grades),
        "scenario": eligible_mask(relaxed, frame, grades),
    }
    settings = {
        "baseline": (base["baseline"]["cover"], 1.0, 1.0),
        "scenario": (base["scenario"]["cover"], limit_factor, premium_factor),
    }
    level = ins.portfolio.headline_level
    n = scenarios or ins.measure19.scenarios
    exports = pd.to_numeric(frame["exports_12m_usd"], errors="coerce").fillna(0.0).clip(lower=0)
    for side, mask in masks.items():
        cov, lf, pf = settings[side]
        book = firm_book(frame, mask, cov, limit_factor=lf, pricing=cfg, insurer=ins)
        pos = buyer_positions(book, lgd=ins.portfolio.lgd)
        dist = simulate_losses(pos, scenarios=n, params=ins.portfolio)
        rates = _firm_rates(frame, cov, product, cfg).fillna(0.0).to_numpy() * pf
        premium = float((rates * book["exposure_usd"].to_numpy()).sum())
        el = float(pos["expected_loss_usd"].sum())
        base[side].update(
            insured_exposure_usd=float(book["exposure_usd"].sum()),
            expected_loss_usd=el,
            premium_usd=premium,
            claims_ratio=el / premium if premium > 0 else 0.0,
            var_usd=dist.var(level),
            es_usd=dist.es(level),
            exports_covered_usd=float(exports[mask].sum()),
            limit_factor=lf,
            premium_factor=pf,
        )
    b, s = base["baseline"], base["scenario"]
    fits = s["insured_exposure_usd"] * b["var_usd"] / s["var_usd"] if s["var_usd"] > 0 else None
    base.update(
        level=level,
        scenarios=n,
        newly_covered_exports_usd=s["exports_covered_usd"] - b["exports_covered_usd"],
        expected_loss_change_usd=s["expected_loss_usd"] - b["expected_loss_usd"],
        cover_under_baseline_var_usd=fits,
        extra_cover_under_same_var_usd=None if fits is None else fits - b["insured_exposure_usd"],
    )
    return base


def measure19_curve(
    frame: pd.DataFrame,
    catalog: ProductCatalog,
    *,
    product_id: str,
    grades: Sequence[str],
    steps: int | None = None,
    pricing: PricingConfig | None = None,
    insurer: InsurerConfig | None = None,
    scenarios: int | None = None,
) -> pd.DataFrame:
    """Coverage against tail loss along a loosening path (one row per step, step 0 = today).

    Step ``t`` of ``steps`` moves every lever by ``t / (steps - 1)`` of its range: the grade
    floor from the product's own to the worst grade, cover from the product's default to the
    maximum, buyer limits up to ``measure19.max_limit_factor``, premium down to
    ``measure19.min_premium_factor``. Each lever only loosens, so covered exposure, expected
    loss and VaR do not fall along the path.
    """
    cfg = pricing or load_pricing_config()
    ins = insurer or load_insurer_config()
    m = ins.measure19
    k = steps or m.curve_steps
    product = catalog[product_id]
    if product.insurance is None:
        raise ValueError(f"product_id must be an insurance product; got {product_id!r}")
    g0 = list(grades).index(_grade_floor(product, grades))
    c0, c1 = product.insurance.cover_default, cfg.insurance.max_cover
    rows = []
    for t in range(k):
        f = t / (k - 1)
        r = measure19_tail(
            frame,
            catalog,
            product_id=product_id,
            grades=grades,
            min_grade=grades[round(g0 + f * (len(grades) - 1 - g0))],
            cover=c0 + f * (max(c1, c0) - c0),
            limit_factor=1 + f * (m.max_limit_factor - 1),
            premium_factor=1 - f * (1 - m.min_premium_factor),
            pricing=cfg,
            insurer=ins,
            scenarios=scenarios,
        )
        s = r["scenario"]
        rows.append(
            {
                "step": t,
                "min_grade": r["min_grade"],
                "cover": s["cover"],
                "limit_factor": s["limit_factor"],
                "premium_factor": s["premium_factor"],
                "covered_firms": s["covered_firms"],
                "exports_covered_usd": s["exports_covered_usd"],
                "insured_exposure_usd": s["insured_exposure_usd"],
                "expected_loss_usd": s["expected_loss_usd"],
                "var_usd": s["var_usd"],
                "es_usd": s["es_usd"],
                "claims_ratio": s["claims_ratio"],
                "financing_unlocked": sum(u["scenario"] for u in r["financing_unlocked"]),
            }
        )
    return pd.DataFrame(rows)
