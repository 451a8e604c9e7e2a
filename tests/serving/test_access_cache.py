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
    from serving.cache import generation
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
    cache.put(
        (svc_firms.a, "expiry bank", "score"),
        cached._replace(expires_at=datetime.now(UTC) - timedelta(seconds=1)),
        generation(),
        time.monotonic(),
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


def test_the_loader_reads_pending_keys_together_and_falls_back_one_by_one() -> None:
    import asyncio

    from serving.cache import AccessCache, MissLoader

    cache: AccessCache[str] = AccessCache(60)
    calls: list[list[str]] = []

    class Session:
        def rollback(self) -> None: ...

        def close(self) -> None: ...

    def load(_session: Any, key: Any) -> str | None:
        calls.append([key])
        if key == "slow":
            time.sleep(0.3)  # keeps the loader busy while the next keys queue up
        return None if key == "refused" else f"one {key}"

    def load_many(_session: Any, keys: list[Any]) -> dict[Any, str | None]:
        calls.append(list(keys))
        if "poison" in keys:
            raise RuntimeError("bad batch")
        return {k: None if k == "refused" else f"many {k}" for k in keys}

    loader: MissLoader[str] = MissLoader(Session, load, load_many)  # type: ignore[arg-type]

    async def behind_a_slow_read(keys: tuple[str, ...]) -> list[Any]:
        slow = asyncio.ensure_future(loader.get(cache, "slow"))
        await asyncio.sleep(0.1)
        rest = await asyncio.gather(*(loader.get(cache, k) for k in keys))
        await slow
        return rest

    got = asyncio.run(behind_a_slow_read(("a", "refused", "b")))
    assert got == ["many a", None, "many b"]
    assert calls == [["slow"], ["a", "refused", "b"]]  # one read for the three
    assert cache.peek("a") == "many a" and cache.peek("refused") is None
    calls.clear()
    cache._entries.clear()
    got = asyncio.run(behind_a_slow_read(("x", "poison", "y")))
    # The batch failed: each of its keys was read on its own, and answered.
    assert got == ["one x", "one poison", "one y"]
    assert calls == [["slow"], ["x", "poison", "y"], ["x"], ["poison"], ["y"]]


def test_a_hit_late_in_its_ttl_is_refreshed_in_the_background() -> None:
    """Refresh-ahead: the hit is answered at once; the reread replaces or drops the answer."""
    import asyncio

    from serving.cache import AccessCache, MissLoader, generation

    # Answers are aged by the time they are put with, not by sleeping to 0.8 ttl (a loaded CI
    # machine overslept that by more than the 0.2 ttl left); the margins left are ≥ 0.4 s.
    ttl = 2.0
    cache: AccessCache[str] = AccessCache(ttl)
    granted = {"a": "grant 1", "b": "grant of b", "c": "grant of c"}
    reads: list[str] = []

    class Session:
        def rollback(self) -> None: ...

        def close(self) -> None: ...

    def load(_session: Any, key: Any) -> str | None:
        reads.append(key)
        if key == "c":
            raise RuntimeError("database down")
        return granted.get(key)

    loader: MissLoader[str] = MissLoader(Session, load)  # type: ignore[arg-type]

    async def settle(n: int) -> None:
        deadline = time.monotonic() + 5
        while len(reads) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # the done callback runs on this loop

    async def run() -> None:
        def refresh(key: Any) -> None:
            loader.refresh(cache, key)

        def put_all(age: float) -> None:
            for key in "abc":
                answer = f"grant of {key}" if key != "a" else "grant 0"
                cache.put(key, answer, generation(), time.monotonic() - age)

        put_all(0.0)
        # Young answers: no reread.
        assert cache.peek("a", refresh) == "grant 0" and reads == []
        put_all(ttl * 0.8)  # the same answers, read 0.8 ttl ago
        granted["a"] = "grant 1"  # changed in the database
        del granted["b"]  # revoked
        assert cache.peek("a", refresh) == "grant 0"  # answered from the cache meanwhile
        assert cache.peek("a", refresh) == "grant 0" and cache.refreshes == 1  # one reread
        assert cache.peek("b", refresh) == "grant of b"
        assert cache.peek("c", refresh) == "grant of c"
        await settle(3)
        assert sorted(reads) == ["a", "b", "c"]
        assert cache.peek("a") == "grant 1"  # replaced
        assert cache.peek("b") is None  # dropped: no longer granted
        assert cache.peek("c") == "grant of c"  # a failed reread leaves the answer in hand
        await asyncio.sleep(ttl * 0.5)
        # "a" was reread at 0.8 ttl, so it lives on past the first answer's ttl; "c" does not.
        assert cache.peek("a") == "grant 1" and cache.peek("c") is None

    asyncio.run(run())


def test_refreshes_gather_into_one_read_and_a_miss_does_not_wait_for_them() -> None:
    """Background refreshes due together share one read; a miss is read at once, with them."""
    import asyncio

    from serving.cache import REFRESH_AFTER, REFRESH_GATHER, AccessCache, MissLoader

    ttl = 2.0
    gather = ttl * (1 - REFRESH_AFTER) * REFRESH_GATHER  # 0.1 s
    cache: AccessCache[str] = AccessCache(ttl)
    reads: list[tuple[float, list[str]]] = []

    class Session:
        def rollback(self) -> None: ...

        def close(self) -> None: ...

    def load(_session: Any, key: Any) -> str | None:
        reads.append((time.monotonic(), [key]))
        return f"one {key}"

    def load_many(_session: Any, keys: list[Any]) -> dict[Any, str | None]:
        reads.append((time.monotonic(), list(keys)))
        return {k: f"many {k}" for k in keys}

    loader: MissLoader[str] = MissLoader(Session, load, load_many)  # type: ignore[arg-type]

    async def settle(n: int) -> None:
        deadline = time.monotonic() + 5
        while sum(len(k) for _, k in reads) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def run() -> None:
        t0 = time.monotonic()
        for key in ("a", "b", "c"):
            loader.refresh(cache, key)
            await asyncio.sleep(gather / 10)
        await settle(3)
        # One read for the three, not before the first refresh had gathered the others.
        assert [k for _, k in reads] == [["a", "b", "c"]]
        assert reads[0][0] - t0 >= gather * 0.9
        reads.clear()
        t1 = time.monotonic()
        loader.refresh(cache, "d")
        got = await loader.get(cache, "e")  # a miss: read now, with the pending refresh
        assert got == "many e"
        assert [sorted(k) for _, k in reads] == [["d", "e"]]
        assert reads[0][0] - t1 < gather  # the miss did not wait out the gather
        await asyncio.sleep(0.02)  # the refresh's done callback runs on this loop
        assert cache.peek("d") == "many d"

    asyncio.run(run())


def test_a_sweep_rereads_answers_hit_since_their_read_before_they_expire() -> None:
    """Answers hit since they were read are reread when due, without a hit in the late window."""
    import asyncio

    from serving.cache import SWEEP_SHARE, AccessCache, MissLoader, generation

    ttl = 2.0
    cache: AccessCache[str] = AccessCache(ttl)
    reads: list[list[str]] = []

    class Session:
        def rollback(self) -> None: ...

        def close(self) -> None: ...

    def load_many(_session: Any, keys: list[Any]) -> dict[Any, str | None]:
        reads.append(sorted(keys))
        return {k: f"reread {k}" for k in keys}

    loader: MissLoader[str] = MissLoader(Session, lambda _s, k: None, load_many)  # type: ignore[arg-type]

    def refresh(key: Any) -> None:
        loader.refresh(cache, key)

    async def run() -> None:
        now = time.monotonic()
        for key in "abc":  # read half a ttl ago: due for a refresh in a quarter of a ttl
            cache.put(key, f"first {key}", generation(), now - ttl * 0.5)
        assert cache.peek("a", refresh) == "first a"  # hit (and a sweep: nothing due yet)
        assert cache.peek("b", refresh) == "first b"
        assert reads == [] and cache.refreshes == 0
        cache.put("d", "first d", generation(), time.monotonic())
        # Past the next sweep: a and b are due within a sweep's period (or already due).
        await asyncio.sleep(ttl * (0.25 - SWEEP_SHARE / 2))
        assert cache.peek("d", refresh) == "first d"  # a young key's hit sweeps the others
        assert cache.refreshes == 2  # a and b (hit since their read); not c, not d
        deadline = time.monotonic() + 5
        while not reads and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # the done callbacks run on this loop
        assert reads == [["a", "b"]]  # one gathered read
        assert cache.peek("a") == "reread a" and cache.peek("b") == "reread b"
        assert cache.peek("c") == "first c"  # never hit: left to expire

    asyncio.run(run())


def test_a_consent_revoked_elsewhere_is_dropped_by_the_refresh_before_the_ttl(
    make_service: Any, db_url: str, svc_firms: Any
) -> None:
    ttl = 1.5
    svc = make_service(db_url, auth_cache_s=ttl)
    key = svc.key("bank", "refresh bank")
    consent_id = svc.consent(svc_firms.a, "refresh bank")
    path = f"/v1/firms/{svc_firms.a}/score"
    start = time.monotonic()
    assert svc.client.get(path, headers=headers(key)).status_code == 200  # read and cached
    _revoke_elsewhere(svc, "consents", consent_id)
    time.sleep(ttl * 0.8)
    cache = svc.app.state.consent_cache
    # Due for a refresh: answered from the cache while the reread sees the revocation.
    assert svc.client.get(path, headers=headers(key)).status_code == 200
    assert cache.refreshes == 1
    deadline = time.monotonic() + 5
    while cache.peek((svc_firms.a, "refresh bank", "score")) is not None:
        assert time.monotonic() < deadline, "the refresh did not drop the revoked consent"
        time.sleep(0.01)
    r = svc.client.get(path, headers=headers(key))
    assert r.status_code == 403
    if time.monotonic() - start < ttl:  # refused before the first answer's ttl ran out
        assert cache.misses >= 2


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
