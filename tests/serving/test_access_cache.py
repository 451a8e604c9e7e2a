"""The worker's key and consent cache: reuse within ``auth_cache_s``, prompt revocation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.serving.conftest import headers

TTL = 0.5


@pytest.fixture()
def svc(make_service: Any, db_url: str) -> Any:
    return make_service(db_url, auth_cache_s=TTL)


def _revoke_elsewhere(svc: Any, table: str, row_id: int) -> None:
    """Revoke as another process would (plain SQL: no invalidation reaches this worker)."""
    with svc.db.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET revoked_at = :now WHERE id = :id"),
            {"now": datetime.now(UTC), "id": row_id},
        )


def test_a_key_revoked_in_another_process_is_refused_within_the_ttl(
    svc: Any, svc_firms: Any
) -> None:
    from serving.models import ApiKey

    key = svc.key("bank", "cache bank")
    svc.consent(svc_firms.a, "cache bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    with svc.db.session() as s:
        key_id = s.scalar(sa.select(ApiKey.id).where(ApiKey.org == "cache bank"))
    _revoke_elsewhere(svc, "api_keys", key_id)
    # Still inside the TTL: the worker has not read the key again.
    started = time.monotonic()
    r = svc.client.get(path, headers=headers(key))
    if time.monotonic() - started < TTL:
        assert r.status_code == 200
    time.sleep(TTL + 0.1)
    assert svc.client.get(path, headers=headers(key)).status_code == 401
    assert svc.app.state.key_cache.hits >= 1


def test_a_consent_revoked_in_another_process_is_refused_within_the_ttl(
    svc: Any, svc_firms: Any
) -> None:
    key = svc.key("bank", "consent bank")
    consent_id = svc.consent(svc_firms.a, "consent bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    _revoke_elsewhere(svc, "consents", consent_id)
    time.sleep(TTL + 0.1)
    r = svc.client.get(path, headers=headers(key))
    assert r.status_code == 403 and "no active consent" in r.json()["detail"]


def test_revocation_in_this_process_takes_effect_at_once(svc: Any, svc_firms: Any) -> None:
    from serving.consent import revoke

    key = svc.key("bank", "local bank")
    consent_id = svc.consent(svc_firms.a, "local bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    for _ in range(3):  # cached now
        assert svc.client.get(path, headers=headers(key)).status_code == 200
    with svc.db.session() as s:
        revoke(s, consent_id)
    assert svc.client.get(path, headers=headers(key)).status_code == 403
    # Through the API as well: the firm revokes, the bank is refused on its next call.
    firm_key = svc.key("enterprise", "firm a", svc_firms.a)
    second = svc.consent(svc_firms.a, "local bank")
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    r = svc.client.delete(f"/v1/firms/{svc_firms.a}/consents/{second}", headers=headers(firm_key))
    assert r.status_code == 200, r.text
    assert svc.client.get(path, headers=headers(key)).status_code == 403


def test_a_cached_consent_past_its_expiry_is_not_used(svc: Any, svc_firms: Any) -> None:
    from serving.models import Consent

    key = svc.key("bank", "expiry bank")
    consent_id = svc.consent(svc_firms.a, "expiry bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    cache = svc.app.state.consent_cache
    cached = cache.peek((svc_firms.a, "expiry bank", "score"))
    assert cached is not None and cached.id == consent_id
    # Expire it in the database and in the cached copy (as time passing would).
    with svc.db.session() as s:
        s.get(Consent, consent_id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    cache._entries[(svc_firms.a, "expiry bank", "score")] = (
        time.monotonic() + 60,
        cache._entries[(svc_firms.a, "expiry bank", "score")][1],
        cached._replace(expires_at=datetime.now(UTC) - timedelta(seconds=1)),
    )
    assert svc.client.get(path, headers=headers(key)).status_code == 403


def test_the_cache_can_be_turned_off(make_service: Any, db_url: str, svc_firms: Any) -> None:
    from serving.models import ApiKey

    svc = make_service(db_url, auth_cache_s=0)
    key = svc.key("bank", "nocache bank")
    svc.consent(svc_firms.a, "nocache bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    with svc.db.session() as s:
        key_id = s.scalar(sa.select(ApiKey.id).where(ApiKey.org == "nocache bank"))
    _revoke_elsewhere(svc, "api_keys", key_id)
    assert svc.client.get(path, headers=headers(key)).status_code == 401
    assert svc.app.state.key_cache.hits == 0


def test_a_consent_miss_is_read_by_the_loader_and_then_served_from_the_cache(
    svc: Any, svc_firms: Any
) -> None:
    key = svc.key("bank", "loader bank")
    svc.consent(svc_firms.a, "loader bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    assert svc.client.get(path, headers=headers(key)).status_code == 200  # the key: threadpool
    cache = svc.app.state.consent_cache
    cache._entries.clear()  # the key stays cached, the consent is a miss: the loader reads it
    misses = cache.misses
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    assert cache.misses == misses + 1
    assert cache.peek((svc_firms.a, "loader bank", "score")) is not None
    # Refusals are not cached, through the loader either.
    other = f"/v1/firms/{svc_firms.b}/score"
    r = svc.client.get(other, headers=headers(key))
    assert r.status_code == 403 and r.json()["type"].endswith("no-consent")
    assert cache.peek((svc_firms.b, "loader bank", "score")) is None


def test_the_loader_keeps_no_answer_read_across_an_invalidation() -> None:
    import asyncio

    from serving.cache import AccessCache, MissLoader, invalidate

    cache: AccessCache[str] = AccessCache(60)

    class FakeSession:
        def rollback(self) -> None:
            raise RuntimeError("connection lost")  # the loader must still answer everyone

        def close(self) -> None:
            raise RuntimeError("connection lost")

    def load(_session: Any, key: Any) -> str | None:
        if key == "fails":
            raise RuntimeError("database down")
        if key == "invalidated":
            invalidate()  # a revocation commits while the row is being read
        return None if key == "refused" else f"grant of {key}"

    loader: MissLoader[str] = MissLoader(FakeSession, load)  # type: ignore[arg-type]

    async def run() -> None:
        assert await loader.get(cache, "a") == "grant of a"
        assert cache.peek("a") == "grant of a"
        assert await loader.get(cache, "refused") is None and cache.peek("refused") is None
        assert await loader.get(cache, "invalidated") == "grant of invalidated"
        assert cache.peek("invalidated") is None
        with pytest.raises(RuntimeError, match="database down"):
            await loader.get(cache, "fails")
        many = await asyncio.gather(*(loader.get(cache, f"k{i}") for i in range(20)))
        assert many == [f"grant of k{i}" for i in range(20)]
        both = await asyncio.gather(
            loader.get(cache, "fails"), loader.get(cache, "b"), return_exceptions=True
        )
        assert isinstance(both[0], RuntimeError) and both[1] == "grant of b"

    asyncio.run(run())


def test_the_score_body_is_the_response_models_serialisation(svc: Any, svc_firms: Any) -> None:
    from serving.schemas import Score

    key = svc.key("bank", "body bank")
    svc.consent(svc_firms.a, "body bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    first = svc.client.get(path, headers=headers(key))
    again = svc.client.get(path, headers=headers(key))
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"] != again.headers["x-request-id"]
    loaded = svc.app.state.serving.current
    model = Score.model_validate(loaded.score_payload(svc_firms.a))
    assert first.content == again.content == model.model_dump_json(by_alias=True).encode()
