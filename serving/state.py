"""What the service serves right now: the current bundle, swapped atomically on reload.

A :class:`~serving.bundle.Loaded` bundle is built once per (model, snapshot) and never changed
afterwards; the :class:`ServingState` holds one and replaces it with a single reference
assignment, so a request that picked up the old bundle finishes on it while new requests see
the new one. A bundle that fails to build or check is refused with a log line and the old one
keeps serving. The model's per-firm work is read from the precomputed file of the (model,
snapshot) when one exists (every worker maps the same file), else computed and written there.

The bundle's parts live in modules named for them: :mod:`serving.bundle` (what a bundle holds
and answers), :mod:`serving.loading` (building one), :mod:`serving.precomputed` (the file).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.default_status import DefaultStatusError, default_flags, load_default_status
from features.values import plain
from serving.bundle import ID_COLUMNS, LazyReasons, Loaded, LoadError, outcome, served_info
from serving.loading import build, load_catalog_for, load_model, peer_percentiles, read_snapshot

if TYPE_CHECKING:
    from serving.settings import Settings

__all__ = [
    "ID_COLUMNS",
    "LazyReasons",
    "LoadError",
    "Loaded",
    "ServingState",
    "build",
    "default_flags",
    "load_catalog_for",
    "load_default_status",
    "load_model",
    "outcome",
    "peer_percentiles",
    "plain",
    "precomputed_for",
    "read_snapshot",
    "served_info",
]

logger = logging.getLogger(__name__)


def precomputed_for(settings: Settings, model: Any, snapshot: Any, path: Path | str) -> Any:
    """Return the precomputed arrays of (model, snapshot); None when switched off."""
    if not getattr(settings, "precompute", True):
        return None
    from serving import precomputed

    client = None
    address = getattr(settings, "dask_scheduler", None)
    if address:
        from distributed import Client

        client = Client(address)
    try:
        return precomputed.ensure(
            model, snapshot, path, getattr(settings, "precompute_dir", None), client=client
        )
    finally:
        if client is not None:
            client.close()


class ServingState:
    """The bundle currently served, swapped atomically on reload.

    Parameters
    ----------
    loaded : Loaded, optional
        Start with this bundle (tests); otherwise :meth:`load` fills it.
    """

    def __init__(self, loaded: Loaded | None = None) -> None:
        self._current = loaded
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def current(self) -> Loaded | None:
        """The bundle being served (read it once per request)."""
        return self._current

    def swap(self, loaded: Loaded) -> Loaded | None:
        """Serve ``loaded`` from now on; return the previous bundle."""
        old, self._current = self._current, loaded
        return old

    def load(
        self,
        settings: Settings,
        model_dir: Path | str | None = None,
        snapshot: Path | str | None = None,
    ) -> Loaded:
        """Build a bundle and swap it in; on any failure keep the old one and raise.

        Parameters
        ----------
        settings : Settings
            Defaults for the model source, snapshot, catalog and reasons.
        model_dir : Path, optional
            Model package (default: ``settings.model_dir``, else the registry champion).
        snapshot : Path, optional
            Snapshot file (default: ``settings.snapshot``, else the current one's).

        Raises
        ------
        LoadError
            Naming the file and the problem; the previous bundle keeps serving.
        """
        with self._reload_lock:  # one reload at a time; requests never wait on it
            start = time.perf_counter()
            try:
                current = self._current
                model_dir = model_dir if model_dir is not None else settings.model_dir
                snap_path = snapshot or settings.snapshot
                if snap_path is None and current is not None:
                    snap_path = current.snapshot_source
                if snap_path is None:
                    raise LoadError(
                        "no snapshot configured: set KUAXIN_SNAPSHOT or pass --snapshot"
                    )
                model, source = load_model(model_dir, settings)
                catalog = load_catalog_for(model, settings.catalog)
                try:
                    status = load_default_status(settings.default_status)
                except DefaultStatusError as exc:
                    raise LoadError(str(exc)) from exc
                frame = read_snapshot(snap_path)
                # Start-up's long step: say what is happening and how much (done: the line below).
                logger.info(
                    "scoring and explaining %d firms of %s with model %s ...",
                    len(frame),
                    snap_path,
                    model.version,
                )
                pre = precomputed_for(settings, model, frame, snap_path)
                loaded = build(
                    model,
                    frame,
                    catalog=catalog,
                    model_source=source,
                    snapshot_source=str(snap_path),
                    top_reasons=settings.top_reasons,
                    default_status=status,
                    precomputed=pre,
                )
            except LoadError as exc:
                self.last_error = str(exc)
                logger.error("load refused, still serving %s: %s", self.describe(), exc)
                raise
            except Exception as exc:  # anything else is still a refused load
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("load refused, still serving %s: %s", self.describe(), exc)
                raise LoadError(self.last_error) from exc
            loaded.score_payload(next(iter(loaded.position)))  # build the lookup arrays now
            old = self.swap(loaded)
            self.last_error = None
            del old
            # The bundle lives as long as it is served: move it (and everything loaded before)
            # out of the collector's sight, so no full collection walks it during requests.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            logger.info(
                "serving model %s (%s) on snapshot %s as of %s: %d firms in %.1f s "
                "(worker %d, scores %s)",
                loaded.model_version,
                loaded.model_source,
                loaded.snapshot_source,
                loaded.as_of,
                len(loaded.position),
                time.perf_counter() - start,
                os.getpid(),
                "computed" if pre is None or pre.source == "computed" else f"from {pre.source}",
            )
            return loaded

    def describe(self) -> str:
        """One line naming what is served."""
        cur = self._current
        if cur is None:
            return "nothing"
        return f"model {cur.model_version} on snapshot {cur.snapshot_source} as of {cur.as_of}"
