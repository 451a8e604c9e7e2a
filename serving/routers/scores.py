"""Scores: one firm, or a portfolio in one call (precomputed; no model work per request)."""

from __future__ import annotations

import weakref
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from features.uscc import validate as validate_uscc
from serving.auth import Principal
from serving.consent import active_grants
from serving.deps import (
    CONSENT_ROLES,
    DbSession,
    FirmAccess,
    LoadedDep,
    SettingsDep,
    audit_access,
    audit_access_async,
    require_firm_access,
    require_role,
    route_rule,
    served_bundle,
)
from serving.guards import require_known
from serving.problems import FieldError, ProblemError, problem_responses
from serving.schemas import BatchError, BatchRequest, BatchResponse, Score
from serving.state import Loaded

router = APIRouter(tags=["scores"])


#: Most score bodies kept per bundle (about 1.5 kB each); a full store is emptied, not grown.
MAX_BODIES = 50_000


class ScoreBodies:
    """The JSON bodies of one bundle's score answers, each built on first ask.

    A firm's score answer holds nothing of the request (the request id and the other headers
    are added by the middleware), so its bytes are fixed per (model, snapshot): built once
    through the :class:`~serving.schemas.Score` model (the bytes FastAPI's response-model
    serialisation would produce) and reused, so a request pays neither validation nor encoding.
    A reload serves a new bundle, which starts a new store.
    """

    def __init__(self) -> None:
        # The bundle and its bodies in one attribute, read once per call: a caller never
        # pairs one bundle with another's bodies (apps on several event loops share the store).
        self._slot: tuple[weakref.ref[Loaded], dict[str, bytes]] | None = None

    def body(self, loaded: Loaded, usc_code: str) -> bytes:
        """Return the JSON body of ``usc_code``'s score answer from ``loaded``."""
        slot = self._slot
        if slot is None or slot[0]() is not loaded:
            slot = self._slot = (weakref.ref(loaded), {})
        bodies = slot[1]
        found = bodies.get(usc_code)
        if found is None:
            model = Score.model_validate(loaded.score_payload(usc_code))
            found = Score.__pydantic_serializer__.to_json(model, by_alias=True)
            if len(bodies) >= MAX_BODIES:
                bodies.clear()
            bodies[usc_code] = found
        return found


_BODIES = ScoreBodies()


@router.get(
    "/firms/{usc_code}/score",
    response_model=Score,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_score(
    request: Request,
    access: Annotated[FirmAccess, Depends(require_firm_access("score"))],
) -> Response:
    """PD, score, grade, supervision class and top reasons of one firm."""
    # On the event loop with one dependency (key and consent, cached per worker): the bundle is
    # read here, after the access checks (their 401/403/422 come first), the body is prebuilt,
    # and the audit wait takes no thread. A returned Response skips response-model validation.
    loaded = served_bundle(request)
    require_known(loaded, access.usc_code)
    body = _BODIES.body(loaded, access.usc_code)
    await audit_access_async(request, [access], loaded.model_version)
    return Response(body, media_type="application/json")


@router.post(
    "/scores/batch",
    response_model=BatchResponse,
    responses=problem_responses(401, 403, 422, 503),
)
def batch_scores(
    request: Request,
    body: BatchRequest,
    principal: Annotated[Principal, Depends(require_role("bank", "insurer", "enterprise"))],
    loaded: LoadedDep,
    session: DbSession,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Scores of many firms; firms the caller may not see are listed under ``errors``."""
    if len(body.usc_codes) > settings.batch_max:
        raise ProblemError(
            422,
            f"body.usc_codes: {len(body.usc_codes)} firms; at most {settings.batch_max} per call",
            kind="invalid-input",
            errors=[
                FieldError(
                    field="body.usc_codes",
                    message=f"{len(body.usc_codes)} items",
                    expected=f"at most {settings.batch_max}",
                )
            ],
        )
    invalid = [
        FieldError(
            field=f"body.usc_codes.{i}",
            message=f"not a valid USCC ({check.reason})",
            expected="18-character GB 32100 code",
        )
        for i, code in enumerate(body.usc_codes)
        if not (check := validate_uscc(code)).valid
    ]
    if invalid:
        detail = "; ".join(f"{e.field}: {e.message}" for e in invalid[:5])
        raise ProblemError(422, detail, kind="invalid-input", errors=invalid)
    codes = list(dict.fromkeys(body.usc_codes))
    errors: list[dict[str, Any]] = []
    granted: list[FirmAccess] = []
    if principal.role in CONSENT_ROLES:
        rule = route_rule(request)
        scope = (rule.grant(principal.role) if rule is not None else None) or "score"
        # The same grant per firm as the one-firm routes read (newest expiry first).
        consents = active_grants(session, [(code, principal.org, scope) for code in codes])
        for code in codes:
            consent = consents[(code, principal.org, scope)]
            if consent is None:
                errors.append(
                    BatchError(
                        usc_code=code, status=403, detail=f"no active consent with scope {scope!r}"
                    ).model_dump()
                )
            else:
                granted.append(FirmAccess(principal, code, consent.purpose, consent.id))
    else:  # an enterprise key: its own firm only
        for code in codes:
            if code == principal.firm_usc:
                granted.append(FirmAccess(principal, code, "own record", None))
            else:
                errors.append(
                    BatchError(
                        usc_code=code, status=403, detail="an enterprise key sees only its own firm"
                    ).model_dump()
                )
    known = []
    for access in granted:
        if loaded.has(access.usc_code):
            known.append(access)
        else:
            errors.append(
                BatchError(
                    usc_code=access.usc_code, status=404, detail="not in the snapshot"
                ).model_dump()
            )
    results = [loaded.score_payload(a.usc_code) for a in known]
    audit_access(request, session, known, loaded.model_version)
    return {
        "results": results,
        "errors": errors,
        "model_version": loaded.model_version,
        "as_of": loaded.as_of,
    }
