"""The outcome loop end to end: applications approved and disbursed, outcomes uploaded as CSV,
``kuaxin outcomes export`` writing the provider's labelled table, and ``kuaxin train --table``
training on it unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from apps_world import APPROVE, BANK, NEED, PRODUCT, build
from typer.testing import CliRunner

N_FIRMS, N_DEFAULTS = 60, 15


def test_outcome_export_trains_through_kuaxin_train_table(
    tmp_path: Path, make_service: Any, svc_firms: Any, svc_loaded: Any
) -> None:
    from features.uscc import validate
    from kuaxin.cli import app as cli
    from serving.models import Application

    url = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    world = build(make_service(url), svc_firms.a, svc_firms.b)
    c = world.svc.client
    valid = [u for u in svc_loaded.position if validate(u).valid]
    firms = list(svc_loaded.scores.loc[valid, "pd"].sort_values(ascending=False).index[:N_FIRMS])
    ids = []
    for usc in firms:  # an admin may act for a firm; the firm's key would do the same
        r = c.post(
            f"/v1/firms/{usc}/applications",
            json={"product_id": PRODUCT, **NEED},
            headers=world.h("admin"),
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        world.open(ids[-1])
        assert world.decide(ids[-1], APPROVE).status_code == 200
    # History: these applications were made two years ago (the only setup done in the database).
    applied = datetime.now(UTC) - timedelta(days=730)
    with world.svc.db.session() as s:
        s.execute(sa.update(Application).values(created_at=applied))
    paid_out = (applied + timedelta(days=30)).date()
    lines = ["application_id,event,date,amount_cny,days_past_due,status,outstanding_cny"]
    for k, app_id in enumerate(ids):
        lines.append(f"{app_id},disbursement,{paid_out},200000,,,")
        if k < N_DEFAULTS:  # the riskiest firms fall 95 days behind after 8 months
            lines.append(f"{app_id},repayment,{paid_out + timedelta(days=240)},0,95,late,200000")
        else:
            lines.append(f"{app_id},repayment,{paid_out + timedelta(days=400)},200000,0,repaid,0")
    # One more application still inside its 12 months: censored, not in the table.
    r = c.post(
        f"/v1/firms/{svc_firms.a}/applications",
        json={"product_id": PRODUCT, **NEED},
        headers=world.h("admin"),
    )
    late_id = r.json()["id"]
    world.open(late_id)
    world.decide(late_id, APPROVE)
    lines.append(f"{late_id},disbursement,{date.today()},100000,,,")
    r = c.post(
        "/v1/provider/outcomes",
        content="\n".join(lines),
        headers={**world.h("bank"), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json()["quarantined"] == 0, r.text
    statuses = [
        a["status"] for a in c.get("/v1/provider/applications", headers=world.h("bank")).json()
    ]
    assert (
        statuses.count("defaulted") == N_DEFAULTS
        and statuses.count("repaid") == N_FIRMS - N_DEFAULTS
    )

    runner = CliRunner()
    table = tmp_path / "outcomes.csv"
    res = runner.invoke(
        cli, ["outcomes", "export", "--provider", BANK, "--out", str(table), "--database-url", url]
    )
    assert res.exit_code == 0, res.output
    assert (
        f"wrote {N_FIRMS} rows ({N_DEFAULTS} defaults)" in res.output
        and "1 still open" in res.output
    )
    frame = pd.read_csv(table)
    assert list(frame.columns[:1]) == ["application_id"] and frame.columns[-1] == "default_12m"
    assert set(svc_loaded.model.feature_names) <= set(frame.columns)
    assert frame["default_12m"].sum() == N_DEFAULTS and late_id not in set(frame["application_id"])
    # Features are the frozen ones: equal to the snapshot the applications were made on.
    first = frame.set_index("application_id").loc[ids[0]]
    snap_row = svc_loaded.snapshot.iloc[svc_loaded.position[firms[0]]]
    num = [f for f in svc_loaded.model.feature_names if pd.api.types.is_numeric_dtype(frame[f])]
    assert all(
        (pd.isna(first[f]) and pd.isna(snap_row[f]))
        or abs(float(first[f]) - float(snap_row[f])) < 1e-9
        for f in num[:20]
    )

    metrics = tmp_path / "metrics.json"
    res = runner.invoke(
        cli,
        [
            "train",
            "--table",
            str(table),
            "--target",
            "default_12m",
            "--id",
            "application_id",
            "--trials",
            "1",
            "--no-register",
            "--metrics-out",
            str(metrics),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(metrics.read_text())
    text = json.dumps(report)
    assert "auc" in text.lower() and report.get("source") == str(table)

    empty = runner.invoke(
        cli,
        [
            "outcomes",
            "export",
            "--provider",
            "Nobody",
            "--out",
            str(tmp_path / "x.csv"),
            "--database-url",
            url,
        ],
    )
    assert empty.exit_code == 1 and "no disbursed application" in empty.output
