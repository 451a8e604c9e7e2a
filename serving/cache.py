"""A short-lived, process-local cache of who a key is and what a firm consented to.

Every keyed request reads its API key and (for firm data) the firm's consent from the
database; under load those two reads and the threadpool hops they need cost more than the
answer itself. :class:`AccessCache` keeps the outcome of each for ``ttl_s`` seconds (the
setting ``auth_cache_s``, 1 s by default; 0 turns the cache off).

Revocation stays prompt:

* a revocation in this process (``revoke_key``, consent ``revoke``, a new grant) calls
  :func:`invalidate`, which empties every cache of the process at once, and again after the
  revoking transaction commits (so a request that read the row just before the commit cannot
  put the old answer back);
* a revocation by another process (another worker, the ``kuaxin keys revoke`` CLI) takes effect
  here within ``ttl_s``;
* a consent's own expiry is checked on every hit, cached or not;
* only granted answers are cached: an unknown key or a missing consent is asked again each time.

Hits refresh ahead: a hit on an answer older than three quarters of its ``ttl_s``
(:data:`REFRESH_AFTER`) asks the :class:`MissLoader` to read it again in the background and is
answered from the cache meanwhile; the new read replaces the answer (or drops it, when the
consent is gone). A hot key is then never a miss, and no answer is older than ``ttl_s``.
Refreshes are not urgent (nobody waits for them), so the loader lets them gather for a
moment (:data:`REFRESH_GATHER`) and reads them together with one query; a miss is read at once,
with every refresh pending by then.

A hit alone would leave a lukewarm key to expire: one asked a few times a second has a fair
chance of no hit inside the last quarter of its ttl, and its next request then waits for a read
(with 200 consented firms spread over two workers, each worker's loader made 231 reads in 3 s
against 51 with one worker, and the second worker served fewer requests than the first alone).
So a hit also *sweeps*, at most every :data:`SWEEP_SHARE` of the ttl: every answer hit since it
was read and due for its refresh before the next sweep is reread in the background, in the same
gathered query. An answer hit in the first 65 % of its ttl (sweeps take what falls due
within one period, so the last 10 % before the refresh is the sweep's blind spot) or in its
last quarter (as before) is reread before it expires; one no longer asked for expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

V = TypeVar("V")

#: Bumped by every invalidation; entries of an older generation are misses.
_generation = 0
_generation_lock = threading.Lock()

#: Most entries one cache holds (a full cache is emptied rather than grown).
MAX_ENTRIES = 100_000
#: Share of ``ttl_s`` after which a hit asks for a background refresh of its answer.
REFRESH_AFTER = 0.75
#: Share of the refresh window (``ttl_s`` after :data:`REFRESH_AFTER`) a refresh may wait for
#: others to share its read: hot keys then cost a few reads a second, not one each, and the
#: reread still lands well before the answer in hand expires.
REFRESH_GATHER = 0.2
#: Share of ``ttl_s`` between two sweeps (see the module's docstring); with the gather and the
#: read, a swept answer is read again well inside the quarter of its ttl left after its refresh.
SWEEP_SHARE = 0.1


def generation() -> int:
    """Return the process's current invalidation generation."""
    return _generation


def invalidate(session: Session | None = None) -> None:
    """Drop every cached access of this process (now and, with ``session``, after its commit).

    Parameters
    ----------
    session : sqlalchemy.orm.Session, optional
        The session whose commit makes the change durable: the caches are emptied again once
        it commits, closing the window in which a concurrent request could re-cache the old row.
    """
    global _generation
    with _generation_lock:
        _generation += 1
    if session is not None and not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit, once=True)


def _after_commit(_session: Session) -> None:
    invalidate()


class AccessCache(Generic[V]):
    """Granted answers kept for ``ttl_s`` seconds and dropped by :func:`invalidate`.

    Parameters
    ----------
    ttl_s : float
        Seconds an answer is reused; 0 disables the cache (every lookup goes to the loader).
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        #: key -> (expires, generation, answer, refresh due)
        self._entries: dict[Hashable, tuple[float, int, V, float]] = {}
        #: Keys whose background refresh is under way (one at a time per key).
        self._refreshing: set[Hashable] = set()
        #: Keys hit since their answer was put: what a sweep rereads.
        self._used: set[Hashable] = set()
        #: (refresh due, key) in the order answers were put, for the sweep (an item whose key
        #: was put again since is stale and skipped). Appends and pops are thread-safe.
        self._due: deque[tuple[float, Hashable]] = deque(maxlen=MAX_ENTRIES)
        self._next_sweep = 0.0
        self.hits = 0
        self.misses = 0
        self.refreshes = 0

    def get(self, key: Hashable, load: Callable[[], V | None]) -> V | None:
        """Return the cached answer for ``key``, or ``load()``'s (cached when not None)."""
        if self.ttl_s <= 0:
            return load()
        now = time.monotonic()
        found = self._entries.get(key)
        if found is not None and found[0] > now and found[1] == _generation:
            self.hits += 1
            return found[2]
        self.misses += 1
        gen = _generation  # read before loading: an invalidation during the load wins
        value = load()
        self.put(key, value, gen, now)
        return value

    def put(self, key: Hashable, value: V | None, gen: int, started: float) -> None:
        """Keep a loaded answer (None is never kept).

        ``gen`` (:func:`generation`) and ``started`` (:func:`time.monotonic`) are read *before*
        the load: an invalidation during the load leaves an entry that is already a miss, and
        the answer lives ``ttl_s`` from when it was asked for.
        """
        if value is None or self.ttl_s <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
            self._used.clear()
        ttl = self.ttl_s
        due = started + ttl * REFRESH_AFTER
        self._entries[key] = (started + ttl, gen, value, due)
        self._used.discard(key)
        self._due.append((due, key))

    def peek(self, key: Hashable, refresh: Callable[[Hashable], None] | None = None) -> V | None:
        """Return a live cached answer without loading (None on a miss).

        Parameters
        ----------
        key : hashable
        refresh : callable, optional
            Called with ``key`` (once until :meth:`refreshed`) when the answer is due for a
            background refresh; the answer is returned all the same.
        """
        if self.ttl_s <= 0:
            return None
        found = self._entries.get(key)
        if found is None or found[1] != _generation:
            return None
        now = time.monotonic()
        if found[0] <= now:
            return None
        self.hits += 1
        if refresh is not None:
            self._used.add(key)
            if found[3] <= now and key not in self._refreshing:
                self._refreshing.add(key)
                self.refreshes += 1
                refresh(key)
            if now >= self._next_sweep:
                self._sweep(now, refresh)
        return found[2]

    def _sweep(self, now: float, refresh: Callable[[Hashable], None]) -> None:
        """Refresh every answer hit since it was read and due before the next sweep."""
        period = self.ttl_s * SWEEP_SHARE
        self._next_sweep = now + period
        horizon = now + period
        queue, entries = self._due, self._entries
        while queue and queue[0][0] <= horizon:
            due, key = queue.popleft()
            found = entries.get(key)
            if found is not None and found[3] != due:
                continue  # put again since: its newer item is further back
            if found is None or found[1] != _generation:
                self._used.discard(key)  # dropped or invalidated: nothing to reread
                continue
            if key in self._used and key not in self._refreshing:
                self._refreshing.add(key)
                self.refreshes += 1
                refresh(key)

    def refreshed(
        self, key: Hashable, value: V | None, gen: int, started: float, failed: bool
    ) -> None:
        """Take a background refresh's answer: kept, dropped when None, left when it failed."""
        self._refreshing.discard(key)
        if failed:
            return  # the answer in hand lives out its ttl; a later hit asks again
        if value is None:
            self._entries.pop(key, None)  # no longer granted (revoked, expired)
            self._used.discard(key)
            return
        self.put(key, value, gen, started)


#: Seconds a :class:`MissLoader` thread waits for work before it ends.
IDLE_EXIT_S = 5.0


class MissLoader(Generic[V]):
    """Loads an :class:`AccessCache`'s misses for ``async`` callers on one thread of its own.

    A miss of a cached check (a consent not asked for within ``auth_cache_s``) needs one
    database read. Through the threadpool each costs the event loop a thread hand-off and a
    request session; here a coroutine queues its key and awaits a future, and the loader's
    thread reads every key pending by then in one session, then wakes each caller. The answer
    is kept in the cache as :meth:`AccessCache.get` would keep it (granted answers only, and
    not after an invalidation made during the read).

    Parameters
    ----------
    sessions : callable
        Returns a new session (the app database's session factory).
    load : callable
        ``load(session, key)``: the answer for ``key``, or None (refused: not cached).
    load_many : callable, optional
        ``load_many(session, keys)``: a dict of the answers of several keys read at once (the
        refreshes and misses pending together); when it fails, each key is read by ``load``.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        load: Callable[[Session, Any], V | None],
        load_many: Callable[[Session, list[Any]], dict[Any, V | None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._load = load
        self._load_many = load_many
        self._cond = threading.Condition()
        self._queue: list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[V | None]]] = []
        #: When the pending keys must be read (a miss: now; refreshes: after a short gather).
        self._due = float("inf")
        self._thread: threading.Thread | None = None

    async def get(self, cache: AccessCache[V], key: Hashable) -> V | None:
        """Return the answer for ``key`` read now (kept in ``cache`` when granted).

        Raises
        ------
        Exception
            Whatever ``load`` raised for this key (e.g. a database error).
        """
        gen, started = _generation, time.monotonic()  # before loading (see AccessCache.put)
        value = await self._enqueue(key)
        cache.misses += 1
        cache.put(key, value, gen, started)
        return value

    def refresh(self, cache: AccessCache[V], key: Hashable) -> None:
        """Read ``key`` again in the background and hand the answer to ``cache`` (no wait).

        Called on the event loop (by :meth:`AccessCache.peek` on a hit due for a refresh).
        """
        gen, started = _generation, time.monotonic()

        def done(fut: asyncio.Future[V | None]) -> None:
            failed = fut.cancelled() or fut.exception() is not None
            cache.refreshed(key, None if failed else fut.result(), gen, started, failed)

        gather = cache.ttl_s * (1 - REFRESH_AFTER) * REFRESH_GATHER
        self._enqueue(key, gather).add_done_callback(done)

    def _enqueue(self, key: Hashable, gather: float = 0.0) -> asyncio.Future[V | None]:
        """Queue ``key`` to be read within ``gather`` seconds (0: at once)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[V | None] = loop.create_future()
        due = time.monotonic() + gather
        with self._cond:
            self._queue.append((key, loop, fut))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kuaxin-cache-loader", daemon=True
                )
                self._thread.start()
            if due < self._due:  # only a sooner read needs the thread woken
                self._due = due
                self._cond.notify()
        return fut

    def _take(self) -> list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[V | None]]]:
        with self._cond:
            while (wait := self._due - time.monotonic()) > 0:
                if self._queue:
                    self._cond.wait(wait)
                elif not self._cond.wait(IDLE_EXIT_S) and not self._queue:
                    self._thread = None
                    return []
            batch, self._queue, self._due = self._queue, [], float("inf")
            return batch

    def _run(self) -> None:
        while batch := self._take():
            self._serve(batch)

    def _serve(
        self, batch: list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[V | None]]]
    ) -> None:
        """Answer every caller of ``batch`` (whatever fails: a caller left waiting would hang)."""
        try:
            session = self._sessions()
        except Exception as exc:
            for _key, loop, fut in batch:
                _wake(loop, fut, (None, exc))
            return
        try:
            known: dict[Any, V | None] = {}
            if self._load_many is not None and len(batch) > 1:
                try:
                    known = self._load_many(session, [key for key, _loop, _fut in batch])
                except Exception:  # read one by one below: each caller gets its own outcome
                    with contextlib.suppress(Exception):
                        session.rollback()
            for key, loop, fut in batch:
                if key in known:
                    _wake(loop, fut, (known[key], None))
                    continue
                try:
                    outcome: tuple[V | None, BaseException | None] = (
                        self._load(session, key),
                        None,
                    )
                except Exception as exc:  # handed to the caller, which answers for it
                    outcome = (None, exc)
                    with contextlib.suppress(Exception):  # a lost connection cannot roll back
                        session.rollback()
                _wake(loop, fut, outcome)
        finally:
            with contextlib.suppress(Exception):
                session.close()


def _wake(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[V | None],
    outcome: tuple[V | None, BaseException | None],
) -> None:
    # A closed loop (shutdown) has nobody waiting on it.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, fut, outcome)


def _resolve(fut: asyncio.Future[V | None], outcome: tuple[V | None, BaseException | None]) -> None:
    if fut.done():  # the caller was cancelled
        return
    value, error = outcome
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def not_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a cached consent's expiry is still ahead (naive datetimes are read as UTC)."""
    if expires_at is None:
        return True
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at > (now or datetime.now(UTC))


__all__: list[Any] = ["AccessCache", "MissLoader", "generation", "invalidate", "not_expired"]
