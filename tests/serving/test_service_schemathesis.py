"""Schemathesis against the app's own OpenAPI document, on SQLite and PostgreSQL.

Every operation, positive and negative data, with a key of each role (and none), all of
schemathesis' checks: no server error, status codes, content types, headers and bodies as the
schema says, negative data rejected, authentication not ignored... One documented setting:
``positive_data_acceptance`` also accepts 422, because the schema cannot express what the
service checks beyond it (a USCC's check digit, the configured product ids and countries, the
model's actionable features). Then a stateful run over the links schemathesis infers.

Budget: ``KUAXIN_FUZZ_CASES`` cases per database (300 by default, as CI runs it), shared out
over every operation (at least 5 each); ``make fuzz`` runs 3,000.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

pytest.importorskip("schemathesis")

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig

CASES = int(os.environ.get("KUAXIN_FUZZ_CASES", "300"))
ROLES = ("bank", "insurer", "enterprise", "regulator", "admin")
CONFIG = {
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
        }
    },
    "phases": {
        "stateful": {"inference": {"algorithms": ["location-headers", "dependency-analysis"]}}
    },
}


@pytest.fixture(scope="module")
def fuzzed(
    module_db_url: str,
    svc_loaded: Any,
    svc_firms: Any,
    svc_settings_kwargs: dict[str, Any],
) -> Any:
    from conftest import Service
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import Database
    from serving.settings import Settings
    from serving.state import ServingState

    settings_ = Settings(
        database_url=module_db_url,
        load_on_start=False,
        rate_limits_enabled=False,
        **svc_settings_kwargs,
    )
    app = create_app(settings_, ServingState(svc_loaded))
    with TestClient(app) as client:
        svc = Service(client=client, app=app, db=Database(module_db_url), loaded=svc_loaded)
        keys = {}
        for role in ROLES:
            org = f"fuzz {role}"
            keys[role] = svc.key(role, org, svc_firms.a if role == "enterprise" else None)
            if role in ("bank", "insurer"):
                svc.consent(svc_firms.a, org, ("score", "explanation", "quote"))
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG)
        )
        yield svc, schema, keys
        svc.db.dispose()


def _failure(case: Any, role: str | None, exc: BaseException) -> str:
    return f"{case.method} {case.formatted_path} as {role or 'no key'}: {str(exc)[:800]}"


def test_every_operation_with_every_role(fuzzed: Any, svc_firms: Any) -> None:
    svc, schema, keys = fuzzed
    checks = CHECKS.get_all()
    firms = [svc_firms.a, svc_firms.b, svc_firms.unknown]
    operations = [result.ok() for result in schema.get_all_operations()]
    per_operation = max(5, CASES // len(operations))  # every operation gets its share
    failures: list[str] = []
    for operation in operations:
        cases = st.sampled_from(firms).flatmap(
            lambda firm, op=operation: st.sampled_from(
                [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
            ).flatmap(
                lambda mode: op.as_strategy(
                    generation_mode=mode, path_parameters={"usc_code": firm}
                )
            )
        )

        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases, role=st.sampled_from([*ROLES, None]))
        def run(case: Any, role: str | None) -> None:
            headers = {"X-API-Key": keys[role]} if role else {}
            try:
                case.call_and_validate(headers=headers, checks=checks, timeout=120)
            except BaseException as exc:  # collect every failure, then report them together
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(_failure(case, role, exc))

        run()
    assert len(operations) >= 20
    assert not failures, f"{len(failures)} failing cases:\n" + "\n\n".join(failures[:10])
    assert svc.verify().ok


@pytest.mark.parametrize("role", [*ROLES, None], ids=lambda r: r or "no-key")
def test_stateful_run(fuzzed: Any, role: str | None) -> None:
    """Sequences of calls along the inferred links, one role per run (so a replay is the same)."""
    svc, schema, keys = fuzzed
    calls: list[int] = []
    headers = {"X-API-Key": keys[role]} if role else {}

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers, "timeout": 120}

        def after_call(self, response: Any, case: Any) -> None:
            calls.append(response.status_code)

    Machine.run(
        settings=settings(
            max_examples=max(3, CASES // 60),
            stateful_step_count=6,
            deadline=None,
            database=None,
            # No shrinking: the server's state moves on between runs, so a replay differs.
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert calls and max(calls) < 500
    assert svc.verify().ok
