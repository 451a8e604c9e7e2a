# ruff: noqa: F811  (the served_world fixture is imported, then requested by name)
"""Recourse inside /matches: vectorised rule goals equal the per-row ones, plans kept per
bundle, configuration validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kx_service import ServedWorld, served_world  # noqa: F401  (fixture)
from pydantic import ValidationError

from serving.market import firm_row, load_market
from tradefinance.rules import evaluate_rules, failed_counts
from training.recourse import CONFIG_PATH, find_recourse, load_recourse_config

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
            for i, variant in enumerate(frame.to_dict("records")):
                scalar = {**row, **{k: (None if v != v else v) for k, v in variant.items()}}
                trace = evaluate_rules(product.rules, scalar, grades)
                assert got[i] == sum(not t.passed for t in trace), (product.id, i)
                checked += 1
    assert checked > 100


def test_a_vectorised_goal_finds_the_plan_the_scalar_goal_finds(
    served_world: ServedWorld,
) -> None:
    loaded = served_world.loaded
    grades = loaded.grades
    product = next(p for p in load_market().products if any(r.field == "grade" for r in p.rules))
    compared = 0
    for usc in list(loaded.position)[:40]:
        row = firm_row(loaded, usc)
        if row["in_default"] or all(t.passed for t in evaluate_rules(product.rules, row, grades)):
            continue

        def goal(scored: Any, rules: Any = product.rules) -> bool:
            return all(t.passed for t in evaluate_rules(rules, scored, grades))

        def mask(frame: pd.DataFrame, row: Any = row) -> Any:
            return failed_counts(product.rules, frame, row, grades) == 0

        # No wall-clock cut-off: on a busy machine the slower scalar search would stop early.
        unbounded = load_recourse_config().model_copy(update={"time_budget_s": 1e6})
        common = {"scales": loaded.scales, "max_steps": 8, "beam": 4, "config": unbounded}
        slow = find_recourse(loaded.model, loaded.catalog, row, goal, **common)
        fast = find_recourse(loaded.model, loaded.catalog, row, goal, goal_mask=mask, **common)
        assert fast.changes == slow.changes and fast.reached == slow.reached
        compared += 1
        if compared >= 3:
            break
    assert compared >= 1


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
