# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""Recourse inside /matches: vectorised rule goals equal the per-row ones, the fast search
(margin cache, rule counts, categorical grades) equals the plain one, plans reach what they
claim when re-scored through the DataFrame path, a call is bounded in time, plans kept per
bundle, configuration validated."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kx_service import ServedWorld, served_world  # noqa: F401  (fixture)
from pydantic import ValidationError

from serving.market import firm_row, load_market
from serving.routers.matching import _recourse_fn
from serving.settings import Settings
from tradefinance.matching import Need, match
from tradefinance.rules import evaluate_rules, failed_counts
from training.recourse import (
    CONFIG_PATH,
    MarginCache,
    find_recourse,
    load_recourse_config,
    score_matrix,
)

NEED = {"amount_cny": 500000, "purpose": "working_capital", "tenor_months": 6}


def _candidates(loaded: Any, usc: str, n: int = 40) -> tuple[dict[str, Any], pd.DataFrame]:
    """A firm's row and a frame of variants: model outputs and some moved features."""
    row = firm_row(loaded, usc)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "pd": rng.uniform(0.001, 0.3, n),
            "grade": rng.choice(loaded.model.master_scale.grades, n),
            "max_dpd_12m": rng.choice([0.0, 15.0, 45.0, np.nan], n),
            "refund_rate_6m": rng.uniform(0, 0.3, n),
        }
    )
    return row, frame


def test_failed_counts_equal_the_per_row_rule_engine(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    grades = loaded.grades
    products = list(load_market().products)
    checked = 0
    for usc in list(loaded.position)[:5]:
        row, frame = _candidates(loaded, usc)
        for product in products:
            got = failed_counts(product.rules, frame, row, grades)
            # The search's frames hold the grade as a categorical over the scale's grades.
            as_category = frame.assign(grade=pd.Categorical(frame["grade"], categories=grades))
            np.testing.assert_array_equal(
                failed_counts(product.rules, as_category, row, grades), got
            )
            for i, variant in enumerate(frame.to_dict("records")):
                scalar = {**row, **{k: (None if v != v else v) for k, v in variant.items()}}
                trace = evaluate_rules(product.rules, scalar, grades)
                assert got[i] == sum(not t.passed for t in trace), (product.id, i)
                checked += 1
    assert checked > 100


def test_score_matrix_and_the_margin_cache_equal_the_dataframe_score(
    served_world: ServedWorld,
) -> None:
    loaded = served_world.loaded
    model = loaded.model
    rows = loaded.snapshot.iloc[:200]
    frame = model.score(rows, num_threads=1)
    fast = score_matrix(model, model.matrix(rows))
    np.testing.assert_allclose(fast["pd"], frame["pd"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(fast["log_odds"], frame["log_odds"], rtol=1e-12, atol=1e-12)
    assert list(fast["grade"].astype(str)) == list(frame["grade"].astype(str))
    assert list(fast["supervision_class"].astype(str)) == list(
        frame["supervision_class"].astype(str)
    )
    # Variants of one firm: cached margins equal the booster's on the full vectors.
    base = firm_row(loaded, str(rows.index[0]))
    numeric = [f.name for f in model.features if f.kind == "numeric"][:5]
    variants = [{f: float(k)} for f in numeric for k in range(3)] + [{}]
    cache = MarginCache(model, base)
    first = cache.margins(variants)
    again = cache.margins(list(reversed(variants)))
    x = np.vstack([model.row_vector({**base, **v}) for v in variants])
    np.testing.assert_array_equal(first, model.margin_matrix(x))
    np.testing.assert_array_equal(again, first[::-1])
    assert cache.scored == len(variants) and cache.reused == len(variants)


def _ineligible(loaded: Any, product: Any, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` performing firms failing only rules the search can move."""
    movable = set(loaded.catalog.actionable) & set(loaded.model.feature_names)
    out = []
    for usc in loaded.position:
        row = firm_row(loaded, usc)
        trace = evaluate_rules(product.rules, row, loaded.grades)
        failed = [t for t in trace if not t.passed]
        if row["in_default"] or not failed:
            continue
        if all(
            t.source == "model" or (t.field in movable and t.actual is not None) for t in failed
        ):
            out.append(row)
        if len(out) >= n:
            break
    return out


def test_rule_counts_give_the_plan_goal_mask_and_progress_give(
    served_world: ServedWorld,
) -> None:
    loaded = served_world.loaded
    grades = loaded.grades
    cfg = load_recourse_config().model_copy(update={"time_budget_s": 1e6})
    compared = 0
    for product in list(load_market().products)[:4]:
        for row in _ineligible(loaded, product, 2):

            def fails(frame: pd.DataFrame, row: Any = row, rules: Any = product.rules) -> Any:
                return failed_counts(rules, frame, row, grades)

            def goal(scored: Any, rules: Any = product.rules) -> bool:
                return all(t.passed for t in evaluate_rules(rules, scored, grades))

            common = {"scales": loaded.scales, "max_steps": 6, "beam": 4, "config": cfg}
            split = find_recourse(
                loaded.model,
                loaded.catalog,
                row,
                goal,
                goal_mask=lambda f, fails=fails: fails(f) == 0,
                progress=lambda f, fails=fails: (
                    fails(f) * cfg.failure_weight + f["log_odds"].to_numpy()
                ),
                **common,
            )
            shared = MarginCache(loaded.model, row)
            once = find_recourse(
                loaded.model, loaded.catalog, row, goal, failures=fails, cache=shared, **common
            )
            assert once.changes == split.changes and once.reached == split.reached
            # A second search of the same firm reuses the first one's margins.
            find_recourse(
                loaded.model, loaded.catalog, row, goal, failures=fails, cache=shared, **common
            )
            assert shared.reused >= shared.scored
            compared += 1
    assert compared >= 2


def test_a_deadline_stops_the_search_after_one_round(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    grades = loaded.grades
    product = next(p for p in load_market().products if any(r.field == "grade" for r in p.rules))
    row = _ineligible(loaded, product, 1)[0]

    def fails(frame: pd.DataFrame) -> Any:
        return failed_counts(product.rules, frame, row, grades)

    def goal(scored: Any) -> bool:
        return all(t.passed for t in evaluate_rules(product.rules, scored, grades))

    common = {"scales": loaded.scales, "failures": fails, "max_steps": 8, "beam": 4}
    cfg = load_recourse_config().model_copy(update={"time_budget_s": 1e6})
    free = find_recourse(loaded.model, loaded.catalog, row, goal, config=cfg, **common)
    cut = find_recourse(
        loaded.model, loaded.catalog, row, goal, config=cfg, deadline=time.monotonic(), **common
    )
    # Past the deadline the search ends after its first round (and the pruning of a plan).
    assert cut.evaluated <= free.evaluated
    assert free.reached or not cut.reached


def test_matches_plans_reach_what_they_claim(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    market = load_market()
    settings = Settings(load_on_start=False, migrate_on_start=False)
    need = Need(amount_cny=500000, purpose="working_capital", tenor_months=6)
    cfg = load_recourse_config()
    products = {p.id: p for p in market.products}
    reached = 0
    for usc in [u for u in loaded.position if not firm_row(loaded, u)["in_default"]][-12:]:
        row = firm_row(loaded, usc)
        fn = _recourse_fn(loaded, usc, row, settings, [cfg.match_products])
        result = match(row, need, market.products, grades=loaded.grades, recourse=fn)
        for m in result.financing + result.insurance:
            plan = (m["recourse"] or {}).get("plan")
            if not plan or not plan["searched"]:
                continue
            # Applied and re-scored through the DataFrame path, a plan reaches what it says.
            changed = {**row, **{c["feature"]: c["after"] for c in plan["changes"]}}
            features = pd.DataFrame([{n: changed[n] for n in loaded.model.feature_names}])
            scored = loaded.model.score(features, num_threads=1).iloc[0].to_dict()
            rules = products[m["product_id"]].rules
            trace = evaluate_rules(rules, {**changed, **scored}, loaded.grades)
            assert all(t.passed for t in trace) == plan["reached"], m["product_id"]
            reached += plan["reached"]
    assert reached >= 1


def test_matches_keep_recourse_plans_per_bundle(served_world: ServedWorld) -> None:
    loaded = served_world.loaded
    with TestClient(served_world.app()) as client:
        h = served_world.headers("enterprise")
        url = f"/v1/firms/{served_world.firm}/matches"
        first = client.post(url, json={**NEED, "recourse": True}, headers=h)
        kept = len(loaded.memo)
        again = client.post(url, json={**NEED, "tenor_months": 12, "recourse": True}, headers=h)
    assert first.status_code == again.status_code == 200

    def plans(answer: Any) -> dict[str, Any]:
        return {
            m["product_id"]: m["recourse"]["plan"]
            for m in answer.json()["financing"]
            if m["recourse"] and m["recourse"]["plan"] and m["recourse"]["plan"]["searched"]
        }

    searched = plans(first)
    if not searched:
        pytest.skip("the served firm has no product whose recourse is searched")
    assert kept >= len(searched)
    assert len(loaded.memo) == kept  # the second need searched nothing new
    for pid, plan in plans(again).items():
        assert plan == searched.get(pid, plan)


def test_recourse_configuration_is_validated(tmp_path: Path) -> None:
    cfg = load_recourse_config()
    assert cfg.max_steps >= 1 and cfg.time_budget_s > 0
    bad = tmp_path / "recourse.yaml"
    bad.write_text(CONFIG_PATH.read_text().replace("beam: 8", "beam: 0"))
    with pytest.raises(ValidationError, match="beam"):
        load_recourse_config(str(bad))
