"""Running the service: one process, or ``--workers N`` processes sharing one socket.

With several workers the parent migrates the database and writes the precomputed file of the
(model, snapshot) once (:mod:`serving.precomputed`), then uvicorn's supervisor starts the
workers; each maps that file instead of scoring and explaining every firm itself. The workers
read their settings from the ``KUAXIN_*`` environment the parent sets.

Every accepted connection gets ``TCP_NODELAY``. asyncio sets it only on sockets whose protocol
number is TCP, and the listening socket uvicorn creates for several workers is opened with
protocol 0, so without this each small response waits for the client's delayed ACK (Nagle's
algorithm): about 40 ms a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from serving.settings import Settings

logger = logging.getLogger(__name__)

#: Format of the service's log lines (the CLI's and every worker's).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Variable passing the log level to the workers.
LOG_LEVEL_ENV = "KUAXIN_LOG_LEVEL"
#: Seconds uvicorn's supervisor waits for a worker's health answer before replacing it.
WORKER_HEALTHCHECK_S = 120


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle's algorithm off on a transport's TCP socket (a no-op for other sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # a closed socket: nothing to switch
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` on every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set ``TCP_NODELAY``, then hand over to uvicorn."""
        set_nodelay(transport)
        super().connection_made(transport)


try:  # httptools is uvicorn's faster parser when installed (the `standard` extra)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with ``TCP_NODELAY`` on every connection."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            """Set ``TCP_NODELAY``, then hand over to uvicorn."""
            set_nodelay(transport)
            super().connection_made(transport)

    HTTP_PROTOCOL: type[asyncio.Protocol] = NoDelayHttpToolsProtocol
except ImportError:
    HTTP_PROTOCOL = NoDelayH11Protocol


def settings_env(settings: Settings) -> dict[str, str]:
    """Return the ``KUAXIN_*`` variables that give a worker the same settings."""
    out: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out[f"KUAXIN_{name.upper()}"] = text
    return out


def prepare(settings: Settings) -> float:
    """Migrate the database and write the precomputed file, once, before workers start.

    Returns
    -------
    float
        Seconds it took.
    """
    from serving.db import upgrade
    from serving.loading import load_model, read_snapshot
    from serving.state import precomputed_for

    start = time.perf_counter()
    if settings.migrate_on_start:
        upgrade(settings.database_url)
    if settings.precompute and settings.snapshot is not None:
        model, _ = load_model(settings.model_dir, settings)
        frame = read_snapshot(settings.snapshot)
        pre = precomputed_for(settings, model, frame, settings.snapshot)
        logger.info(
            "precomputed scores of %d firms: %s", len(frame), getattr(pre, "source", "none")
        )
    return time.perf_counter() - start


def worker_app() -> FastAPI:
    """App factory of one worker (settings from the environment the parent set)."""
    from serving.app import create_app
    from serving.settings import Settings

    # A spawned worker starts with bare logging: give the service's own loggers the parent's
    # level and format (uvicorn configures only its own).
    logging.basicConfig(
        level=os.environ.get(LOG_LEVEL_ENV, "info").upper(), format=LOG_FORMAT, force=False
    )
    return create_app(Settings())


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the service in the foreground until interrupted.

    Parameters
    ----------
    settings : Settings
    host, port : str, int
        Where to listen.
    workers : int
        Processes sharing the socket (1: this process serves).
    log_level : str
    access_log : bool
    """
    import uvicorn

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": access_log,
        "http": HTTP_PROTOCOL,
    }
    if workers <= 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    took = prepare(settings)
    logger.info("prepared database and precomputed scores for %d workers in %.1f s", workers, took)
    env = settings_env(settings)
    env["KUAXIN_MIGRATE_ON_START"] = "false"  # done above, once: workers must not race on it
    env[LOG_LEVEL_ENV] = log_level
    os.environ.update(env)
    uvicorn.run(
        "serving.workers:worker_app",
        factory=True,
        workers=workers,
        # A worker imports the stack and maps the bundle before it answers the supervisor's
        # health pings promptly; on a busy machine that takes longer than uvicorn's 5 s.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        **common,
    )
