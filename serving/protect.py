"""Limits in front of the application: body size, rate limits and safe response headers.

A pure ASGI middleware, so it runs before any route reads a body or checks a key:

* a body larger than ``max_body_bytes`` is refused with 413 before it is read (by its
  ``Content-Length``, or while a chunked body streams in);
* per client address and per API key, requests over the configured rate get 429 with
  ``Retry-After`` (the ``limits`` library; memory storage by default, any ``limits`` storage
  URI such as ``redis://`` to share the counts between workers);
* a client whose keys were refused (401) too often gets 429 until the window passes, so
  guessing keys is slow;
* every answer carries ``X-Content-Type-Options: nosniff``, and API answers
  ``Cache-Control: no-store`` (firm data must not sit in caches).
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problems import PROBLEM_JSON, TYPE_BASE

if TYPE_CHECKING:
    from serving.settings import Settings

#: Paths whose answers may be cached (static files of the portal).
CACHEABLE_PREFIXES = ("/portal/static/",)


def _problem(status: int, title: str, detail: str, path: str) -> bytes:
    kind = "rate-limited" if status == 429 else "payload-too-large"
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    body["instance"] = path
    return json.dumps(body).encode()


class ProtectMiddleware:
    """Body-size limit, rate limits and security headers (see the module docstring).

    Parameters
    ----------
    app : ASGIApp
    settings : Settings
        ``max_body_bytes``, ``rate_limit_client``, ``rate_limit_key``,
        ``rate_limit_auth_failures``, ``rate_limit_storage``, ``rate_limits_enabled``.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.enabled = settings.rate_limits_enabled
        self.limiter = FixedWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
        self.per_client: RateLimitItem = parse(settings.rate_limit_client)
        self.per_key: RateLimitItem = parse(settings.rate_limit_key)
        self.auth_failures: RateLimitItem = parse(settings.rate_limit_auth_failures)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        client = (scope.get("client") or ("unknown", 0))[0]
        refusal = self._rate_refusal(client, headers.get(b"x-api-key", b""))
        if refusal is not None:
            await self._refuse(send, path, 429, *refusal)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._refuse(send, path, 413, self._too_large(), None)
            return
        if length is None and headers.get(b"transfer-encoding"):
            body = await self._read_limited(receive)
            if body is None:
                await self._refuse(send, path, 413, self._too_large(), None)
                return
            receive = _replay(body, receive)

        async def send_safe(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.setdefault("X-Content-Type-Options", "nosniff")
                if not path.startswith(CACHEABLE_PREFIXES):
                    out["Cache-Control"] = "no-store"
                if message["status"] == 401 and self.enabled:
                    self.limiter.hit(self.auth_failures, "auth", client)
            await send(message)

        await self.app(scope, receive, send_safe)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body} bytes"

    def _rate_refusal(self, client: str, key: bytes) -> tuple[str, int] | None:
        """Return (detail, retry-after seconds) when a limit is exhausted, else count the hit."""
        if not self.enabled:
            return None
        checks: list[tuple[RateLimitItem, tuple[str, ...], str, bool]] = [
            (self.auth_failures, ("auth", client), "too many refused keys from this client", False),
            (self.per_client, ("client", client), "too many requests from this client", True),
        ]
        if key:
            # The key's public prefix identifies it; the secret part never reaches the storage.
            prefix = key.decode("latin-1").split("_")[:2]
            checks.append(
                (self.per_key, ("key", "_".join(prefix)), "too many requests with this key", True)
            )
        for item, ids, detail, count in checks:
            allowed = self.limiter.hit(item, *ids) if count else self.limiter.test(item, *ids)
            if not allowed:
                reset = self.limiter.get_window_stats(item, *ids).reset_time
                return f"{detail} (limit {item})", max(1, math.ceil(reset - time.time()))
        return None

    async def _read_limited(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(
        self, send: Send, path: str, status: int, detail: str, retry_after: int | None
    ) -> None:
        title = "Too Many Requests" if status == 429 else "Content Too Large"
        body = _problem(status, title, detail, path)
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if status == 413:  # the unread body stays on the socket: do not reuse it
            headers.append((b"connection", b"close"))
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the buffered body to the app once, then pass on what the client sends next."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
