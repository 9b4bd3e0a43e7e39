"""This process's re-inference thread: the worker heartbeat wakes it (``catalog.workflows``), and it
advances running re-inferences step after step (``catalog.reinfer``) until none moves, then sleeps until
the next wake. A step can take seconds of model time, so it runs here and not on the heartbeat's thread."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.catalog")


class Runner:
    """The thread, started on the first ``wake``; ``close`` stops it after the step it is in."""

    def __init__(self) -> None:
        self._woken = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self, ctx: AppContext) -> None:
        """Have the thread look for work now (started if it is not running)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, args=(ctx,), name="modelyard-reinfer", daemon=True
                )
                self._thread.start()
        self._woken.set()

    @property
    def stopping(self) -> bool:
        """Whether ``close`` was called: a step stops before its next batch (what it ran is stored)."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the thread (waiting for the step it is in)."""
        self._stop.set()
        self._woken.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)

    def _serve(self, ctx: AppContext) -> None:
        from modelyard.catalog import reinfer

        ctx.preparer.get().start()  # up by the time a step decodes features (``inferrers.prepare``)
        while True:
            self._woken.wait()
            self._woken.clear()
            while not self._stop.is_set():
                try:
                    if not reinfer.advance(ctx):
                        break
                except Exception:
                    log.exception("re-inference step failed")
                    break
            if self._stop.is_set():
                return
