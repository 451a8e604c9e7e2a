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
"""

from __future__ import annotations

import threading
import time
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
        self._entries: dict[Hashable, tuple[float, int, V]] = {}
        self.hits = 0
        self.misses = 0

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
        if value is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self.ttl_s, gen, value)
        return value

    def peek(self, key: Hashable) -> V | None:
        """Return a live cached answer without loading (None on a miss)."""
        if self.ttl_s <= 0:
            return None
        found = self._entries.get(key)
        if found is not None and found[0] > time.monotonic() and found[1] == _generation:
            self.hits += 1
            return found[2]
        return None


def not_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a cached consent's expiry is still ahead (naive datetimes are read as UTC)."""
    if expires_at is None:
        return True
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at > (now or datetime.now(UTC))


__all__: list[Any] = ["AccessCache", "generation", "invalidate", "not_expired"]
