"""The per-request statements (key and consent look-ups) answer as the ORM helpers do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from features.uscc import generate
from serving.auth import authenticate, create_key, revoke_key
from serving.consent import (
    active_consent,
    active_grant,
    active_grants,
    grant,
    revoke,
    scopes_of,
)
from serving.db import Database, upgrade
from serving.models import Consent


def test_active_grant_equals_active_consent(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    firms = generate(np.random.default_rng(4), 5)
    soon = datetime.now(UTC) + timedelta(days=3)
    later = datetime.now(UTC) + timedelta(days=30)
    with db.session() as s:
        # a consent goes only to an institution with an active bank or insurer key
        create_key(s, "bank", "Bank")
        create_key(s, "bank", "Other Bank")
    with db.session() as s:
        grant(s, firms[0], "Bank", ["score"], "short", soon)
        grant(s, firms[0], "Bank", ["score", "explanation"], "long", later)  # latest expiry wins
        grant(s, firms[1], "Bank", ["explanation"], "other scope", later)
        expired = grant(s, firms[2], "Bank", ["score"], "expired", later)
        s.get(Consent, expired.id).expires_at = datetime.now(UTC) - timedelta(days=1)
        revoke(s, grant(s, firms[3], "Bank", ["score"], "revoked", later).id)
        grant(s, firms[4], "Other Bank", ["score"], "other institution", later)
    with db.sessions() as s:
        for firm in firms:
            for scope in ("score", "explanation", "quote"):
                orm = active_consent(s, firm, "Bank", scope)
                fast = active_grant(s, firm, "Bank", scope)
                expected = None if orm is None else (orm.id, orm.purpose, tuple(scopes_of(orm)))
                assert (fast[:3] if fast else None) == expected, (firm, scope)
                if fast is not None:  # the expiry travels with it (the access cache checks it)
                    assert fast.expires_at == orm.expires_at
        assert active_grant(s, firms[0], "Bank", "score")[1] == "long"  # type: ignore[index]
        # Many keys at once (the cache loader's batches) answer as one key at a time does.
        keys = [
            (firm, org, scope)
            for firm in firms
            for org in ("Bank", "Other Bank", "No Bank")
            for scope in ("score", "explanation", "quote")
        ]
        assert active_grants(s, keys) == {k: active_grant(s, *k) for k in keys}
        assert active_grants(s, []) == {}
    db.dispose()


def test_authenticate_sees_revocation_at_once(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    with db.session() as s:
        key, row = create_key(s, "bank", "Bank")
        key_id = row.id
    with db.sessions() as s:
        principal = authenticate(s, key)
        assert principal is not None and principal.key_id == key_id and principal.org == "Bank"
        assert authenticate(s, key[:-1] + ("a" if key[-1] != "a" else "b")) is None
    with db.session() as s:
        revoke_key(s, key_id)
    with db.sessions() as s:
        assert authenticate(s, key) is None
    db.dispose()
