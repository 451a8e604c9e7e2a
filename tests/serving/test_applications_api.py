"""Applications over HTTP on SQLite and PostgreSQL: apply and consent, the frozen view, the state
machine, decisions and notices, provider isolation, provider products, outcomes and statistics.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from apps_world import APPROVE, BANK, NEED, PRODUCT, AppsWorld, build


@pytest.fixture()
def world(db_url: str, make_service: Any, svc_firms: Any) -> AppsWorld:
    return build(make_service(db_url), svc_firms.a, svc_firms.b)


def test_apply_grants_a_scoped_consent_and_freezes_the_view(world: AppsWorld) -> None:
    c = world.svc.client
    # Before applying the bank has no consent: the firm's score is closed to it.
    assert c.get(f"/v1/firms/{world.a}/score", headers=world.h("bank")).status_code == 403
    before = world.svc.audit_count()
    r = world.apply()
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["status"] == "submitted" and app["provider_org"] == BANK
    assert app["consent_state"] == "active"
    consents = c.get(f"/v1/firms/{world.a}/consents", headers=world.h("firm_a")).json()
    mine = [x for x in consents if x["id"] == app["consent_id"]]
    assert mine and mine[0]["purpose"] == f"application {app['id']}"
    assert mine[0]["institution"] == BANK and sorted(mine[0]["scopes"]) == ["explanation", "score"]
    assert mine[0]["expires_at"] > mine[0]["granted_at"]
    # The frozen record: score, reasons, rule trace, limit and price, with the model version.
    frozen = app["frozen"]
    loaded = world.svc.loaded
    assert frozen["model_version"] == loaded.model_version
    assert frozen["score"]["grade"] == loaded.score_payload(world.a)["grade"]
    assert frozen["score"]["reasons"] == json.loads(
        json.dumps(loaded.reasons[loaded.position[world.a]])
    )
    assert (
        frozen["match"]["trace"] and "limit_cny" in frozen["match"] and "price" in frozen["match"]
    )
    assert frozen["product"]["id"] == PRODUCT and frozen["product"]["version"] == 0
    assert set(frozen["features"]) == set(loaded.model.feature_names)
    assert world.svc.audit_count() == before + 1
    # The consent opens the firm's score to the bank, as any consent would.
    assert c.get(f"/v1/firms/{world.a}/score", headers=world.h("bank")).status_code == 200
    assert world.svc.verify().ok


def test_withdrawal_revokes_the_consent(world: AppsWorld) -> None:
    c = world.svc.client
    app = world.apply().json()
    assert world.open(app["id"]).status_code == 200
    r = c.post(f"/v1/firms/{world.a}/applications/{app['id']}/withdraw", headers=world.h("firm_a"))
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    assert r.json()["consent_state"] == "revoked"
    assert world.open(app["id"]).status_code == 403
    assert world.open(app["id"]).json()["type"].endswith("no-consent")
    assert c.get(f"/v1/firms/{world.a}/score", headers=world.h("bank")).status_code == 403
    again = c.post(
        f"/v1/firms/{world.a}/applications/{app['id']}/withdraw", headers=world.h("firm_a")
    )
    assert again.status_code == 409


def test_a_provider_cannot_read_or_decide_another_providers_application(world: AppsWorld) -> None:
    c = world.svc.client
    app = world.apply().json()
    for who in ("other_bank", "insurer"):
        assert world.open(app["id"], who).status_code == 403
        assert world.decide(app["id"], APPROVE, who).status_code == 403
        inbox = c.get("/v1/provider/applications", headers=world.h(who)).json()
        assert app["id"] not in [a["id"] for a in inbox]
    assert [
        a["id"] for a in c.get("/v1/provider/applications", headers=world.h("bank")).json()
    ] == [app["id"]]
    # Firms see only their own applications; regulators none.
    r = c.get(f"/v1/firms/{world.a}/applications/{app['id']}", headers=world.h("firm_b"))
    assert r.status_code == 403
    r = c.get(f"/v1/firms/{world.b}/applications/{app['id']}", headers=world.h("firm_b"))
    assert r.status_code == 404
    assert world.open(app["id"], "regulator").status_code == 403
    # Nothing was decided by the refused calls.
    assert world.open(app["id"]).json()["status"] == "under_review"


def test_the_state_machine_over_http(world: AppsWorld) -> None:
    c = world.svc.client
    app_id = world.apply().json()["id"]
    # Deciding before opening: 409 naming what is allowed.
    r = world.decide(app_id, APPROVE)
    assert r.status_code == 409 and r.json()["errors"][0]["expected"] == "open"
    assert world.open(app_id).json()["status"] == "under_review"
    r = world.decide(app_id, {"action": "request_info", "information": ["tax_records"]})
    assert r.status_code == 200 and r.json()["status"] == "info_requested"
    r = world.decide(app_id, APPROVE)
    assert r.status_code == 409 and "decline" in r.json()["detail"]
    r = c.post(
        f"/v1/firms/{world.a}/applications/{app_id}/respond",
        json={"note": "tax records uploaded"},
        headers=world.h("firm_a"),
    )
    assert r.status_code == 200 and r.json()["status"] == "under_review"
    r = world.decide(app_id, APPROVE)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["decided_at"] is not None
    assert world.decide(app_id, APPROVE).status_code == 409
    disb = {"date": r.json()["created_at"][:10], "amount_cny": 200000}
    r = c.post(
        f"/v1/provider/applications/{app_id}/disbursement", json=disb, headers=world.h("bank")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disbursed"
    rep = {"date": disb["date"], "status": "repaid"}
    r = c.post(f"/v1/provider/applications/{app_id}/repayments", json=rep, headers=world.h("bank"))
    assert r.status_code == 200 and r.json()["status"] == "repaid"
    r = c.post(f"/v1/provider/applications/{app_id}/repayments", json=rep, headers=world.h("bank"))
    assert r.status_code == 409
    steps = [(e["from_status"], e["to_status"]) for e in r.json().get("events", [])] or [
        (e["from_status"], e["to_status"]) for e in world.open(app_id).json()["events"]
    ]
    assert steps == [
        (None, "submitted"),
        ("submitted", "under_review"),
        ("under_review", "info_requested"),
        ("info_requested", "under_review"),
        ("under_review", "approved"),
        ("approved", "disbursed"),
        ("disbursed", "repaid"),
    ]
    assert world.svc.verify().ok


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"amount_cny": 10, "rate": 0.06, "tenor_months": 6}, "body.terms.amount_cny"),
        ({"amount_cny": 200000, "rate": 0.5, "tenor_months": 6}, "body.terms.rate"),
        ({"amount_cny": 200000, "rate": 0.06, "tenor_months": 60}, "body.terms.tenor_months"),
        ({"amount_cny": 200000, "rate": 0.06}, "body.terms.tenor_months"),
    ],
)
def test_terms_outside_the_products_ranges_are_refused_naming_the_field(
    world: AppsWorld, terms: dict[str, Any], field: str
) -> None:
    app_id = world.apply().json()["id"]
    world.open(app_id)
    r = world.decide(app_id, {"action": "approve", "terms": terms})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert "to" in (r.json()["errors"][0]["expected"] or "")
    assert world.open(app_id).json()["status"] == "under_review"


def test_decline_gives_a_bilingual_adverse_action_notice(world: AppsWorld) -> None:
    c = world.svc.client
    app_id = world.apply().json()["id"]
    view = world.open(app_id).json()
    options = [o["code"] for o in view["reason_options"]]
    model_codes = [o for o in options if o.startswith("model:")]
    assert model_codes, "the frozen record has model reasons to cite"
    bad = world.decide(app_id, {"action": "decline", "reasons": ["model:R999"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.reasons.0"
    r = world.decide(
        app_id, {"action": "decline", "reasons": [model_codes[0], "policy:outside_appetite"]}
    )
    assert r.status_code == 200 and r.json()["status"] == "declined"
    firm_view = c.get(
        f"/v1/firms/{world.a}/applications/{app_id}", headers=world.h("firm_a")
    ).json()
    notice = firm_view["decision"]["notice"]
    reason = next(
        x for x in view["frozen"]["score"]["reasons"] if f"model:{x['code']}" == model_codes[0]
    )
    assert reason["text_zh"] in notice["zh"] and reason["text_en"] in notice["en"]
    assert "风险偏好" in notice["zh"] and "risk appetite" in notice["en"]
    assert firm_view["allowed_actions"] == []


def test_conditional_approval_checks_the_policy_assignment(world: AppsWorld) -> None:
    app_id = world.apply(
        product_id="pcb_export_order_financing", purpose="order_fulfilment"
    ).json()["id"]
    world.open(app_id)
    terms = {"amount_cny": 200000, "rate": 0.05, "tenor_months": 6}
    r = world.decide(
        app_id,
        {
            "action": "approve_with_conditions",
            "terms": terms,
            "conditions": [{"code": "assign_credit_insurance", "insurance_product_id": "nope"}],
        },
    )
    assert (
        r.status_code == 422
        and r.json()["errors"][0]["field"] == "body.conditions.0.insurance_product_id"
    )
    r = world.decide(
        app_id,
        {
            "action": "approve_with_conditions",
            "terms": terms,
            "conditions": [
                {
                    "code": "assign_credit_insurance",
                    "insurance_product_id": "sinosure_steci_comprehensive",
                }
            ],
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "conditionally_approved"
    assert (
        r.json()["decision"]["conditions"][0]["insurance_product_id"]
        == "sinosure_steci_comprehensive"
    )


def test_the_frozen_view_stays_unchanged_after_a_new_model_or_snapshot(
    world: AppsWorld, svc_loaded: Any
) -> None:
    from serving.state import build as build_loaded

    app = world.apply().json()
    first = world.open(app["id"]).json()
    # Load another snapshot: firm A's features changed, so its served score changes.
    snap = svc_loaded.snapshot
    snap = snap.reset_index(drop="usc_code" in snap.columns)
    i = snap.index[snap["usc_code"] == world.a][0]
    for col in ("refund_rate_6m", "max_dpd_12m", "current_dpd"):
        if col in snap.columns:
            snap.loc[i, col] = 120 if "dpd" in col else 0.9
    new = build_loaded(
        svc_loaded.model, snap, catalog=svc_loaded.catalog, model_source="m2", snapshot_source="s2"
    )
    world.svc.app.state.serving.swap(new)
    assert new.score_payload(world.a)["pd"] != first["frozen"]["score"]["pd"]
    again = world.open(app["id"]).json()
    assert again["frozen"] == first["frozen"] and again["frozen_sha256"] == first["frozen_sha256"]
    from tradefinance.applications import canonical, digest

    assert digest(canonical(again["frozen"])) == again["frozen_sha256"]
    firm = world.svc.client.get(
        f"/v1/firms/{world.a}/applications/{app['id']}", headers=world.h("firm_a")
    )
    assert firm.json()["frozen"] == first["frozen"]


def test_post_a_need_to_every_eligible_provider(world: AppsWorld, svc_loaded: Any) -> None:
    c = world.svc.client
    r = c.post(
        f"/v1/firms/{world.a}/matches", json={**NEED, "recourse": False}, headers=world.h("firm_a")
    )
    eligible = {m["product_id"] for m in r.json()["financing"] if m["eligible"]}
    r = c.post(f"/v1/firms/{world.a}/needs", json=NEED, headers=world.h("firm_a"))
    if not eligible:
        assert r.status_code == 409
        return
    assert r.status_code == 201, r.text
    apps = r.json()["applications"]
    assert {a["product_id"] for a in apps} == eligible
    assert len({a["consent_id"] for a in apps}) == len(apps)
    assert len({a["need_ref"] for a in apps}) == 1


def test_regulator_statistics_are_aggregates(world: AppsWorld) -> None:
    c = world.svc.client
    ids = [world.apply().json()["id"] for _ in range(3)]
    for i in ids:
        world.open(i)
    world.decide(ids[0], APPROVE)
    world.decide(ids[1], {"action": "decline", "reasons": ["policy:other"]})
    assert c.get("/v1/regulator/applications", headers=world.h("bank")).status_code == 403
    stats = c.get("/v1/regulator/applications", headers=world.h("regulator")).json()
    t = stats["totals"]
    assert (t["applications"], t["decided"], t["approvals"], t["declines"]) == (3, 2, 1, 1)
    assert t["approval_rate"] == 0.5 and t["approved_amount_cny"] == 200000
    assert stats["by_status"]["under_review"] == 1
    assert stats["by_kind"][0]["kind"] == "credit_loan" and stats["by_kind"][0]["applications"] == 3
    assert sum(g["applications"] for g in stats["by_grade"]) == 3
    assert stats["time_to_decision_hours"]["count"] == 2
    assert stats["service_level"]["within"] == 2 and stats["service_level"]["share_within"] == 1.0
    assert world.a not in json.dumps(stats)


def test_outcome_upload_quarantines_bad_rows_with_reasons(world: AppsWorld) -> None:
    c = world.svc.client
    ids = [world.apply().json()["id"] for _ in range(2)]
    for i in ids:
        world.open(i)
        world.decide(i, APPROVE)
    other = world.apply(
        who="firm_b", firm=world.b, product_id="nhb_packing_loan", purpose="order_fulfilment"
    ).json()["id"]
    day = world.open(ids[0]).json()["created_at"][:10]
    csv = "\n".join(
        [
            "application_id,event,date,amount_cny,days_past_due,status,outstanding_cny",
            f"{ids[0]},disbursement,{day},200000,,,",
            f"{ids[0]},repayment,{day},10000,0,current,190000",
            f"{ids[1]},repayment,{day},,0,current,",  # not disbursed yet
            f"{ids[1]},disbursement,{day},900000,,,",  # more than approved
            f"{ids[1]},disbursement,2021/03/01,1000,,,",
            f"{other},disbursement,{day},1000,,,",  # another provider's application
            f"{ids[0]},repayment,{day},,5000,late,",
            f"{ids[0]},disbursement,{day},200000,,,",  # duplicate key
        ]
    )
    r = c.post(
        "/v1/provider/outcomes",
        content=csv,
        headers={**world.h("bank"), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["read"], body["accepted"], body["quarantined"]) == (8, 2, 6)
    reasons = {q["_row"]: q["_reason"] for q in body["quarantine"]}
    assert "event: state" in reasons[2]
    assert "amount_cny: range" in reasons[3]
    assert reasons[4].startswith("date: type")
    assert reasons[5].startswith("application_id: reference")
    assert reasons[6].startswith("days_past_due: range")
    assert reasons[7].startswith("duplicate")
    assert body["by_reason"]["event: state"] == 1
    assert world.open(ids[0]).json()["status"] == "disbursed"
    from serving.models import OutcomeQuarantine

    with world.svc.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(OutcomeQuarantine)) == 6
    bad = c.post(
        "/v1/provider/outcomes",
        content="a,b\n1,2",
        headers={**world.h("bank"), "Content-Type": "text/csv"},
    )
    assert bad.status_code == 422 and "application_id" in bad.json()["detail"]
