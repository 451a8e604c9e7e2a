"""Helpers of the applications tests: a service with the institutions that own seed products."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conftest import Service, headers

#: The seed product the tests apply for, and its owner (tradefinance/config/applications.yaml).
PRODUCT = "pcb_cbec_credit_loan"
BANK = "Pengcheng Commercial Bank"
OTHER_BANK = "Nanhai Trade Bank"
INSURER = "Sinosure Shenzhen"
NEED = {"amount_cny": 200000, "purpose": "working_capital", "tenor_months": 6}
APPROVE = {"action": "approve", "terms": {"amount_cny": 200000, "rate": 0.06, "tenor_months": 6}}


@dataclass
class AppsWorld:
    """A service, firm A and B, and a key per caller."""

    svc: Service
    a: str
    b: str
    keys: dict[str, str] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return headers(self.keys[who])

    def apply(self, who: str = "firm_a", firm: str | None = None, **need: Any) -> Any:
        body = {"product_id": PRODUCT, **NEED, **need}
        return self.svc.client.post(
            f"/v1/firms/{firm or self.a}/applications", json=body, headers=self.h(who)
        )

    def open(self, app_id: int, who: str = "bank") -> Any:
        return self.svc.client.get(f"/v1/provider/applications/{app_id}", headers=self.h(who))

    def decide(self, app_id: int, body: dict[str, Any], who: str = "bank") -> Any:
        return self.svc.client.post(
            f"/v1/provider/applications/{app_id}/decision", json=body, headers=self.h(who)
        )


def build(svc: Service, a: str, b: str) -> AppsWorld:
    """Keys for both firms, the owning bank, another bank, the insurer, regulator and admin."""
    world = AppsWorld(svc, a, b)
    world.keys = {
        "firm_a": svc.key("enterprise", "Firm A", a),
        "firm_b": svc.key("enterprise", "Firm B", b),
        "bank": svc.key("bank", BANK),
        "other_bank": svc.key("bank", OTHER_BANK),
        "insurer": svc.key("insurer", INSURER),
        "regulator": svc.key("regulator", "Shenzhen Commerce Bureau"),
        "admin": svc.key("admin", "Kuaxin ops"),
    }
    return world
