"""The queue snapshots the dashboard's pages show (a pipeline's events by state and its stages' queues).

Counting every event and stage run of a big pipeline is a scan of an index (about 100 ms at 100,000
events, more on a busy machine), and the overview, the pipelines list and each pipeline page all show
one. So a page does not wait for that count when a recent one is kept: a snapshot at most ``FRESH_S``
old is shown as it is; one at most ``STALE_S`` old is shown while a new one is read in the background;
none, or an older one, and the page reads one itself. Pages say when their counts were taken, and a
page that just changed a pipeline (a submission) drops its snapshot first. The API's own snapshot
(``/queues`` and its stream) is always read afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.types import ASGIApp

from modelyard.web.client import Api
from modelyard.web.session import Viewer

log = logging.getLogger("modelyard.web")
FRESH_S = 5.0
STALE_S = 30.0

Reader = Callable[[str, str], Awaitable[dict[str, Any]]]


class Snapshots:
    """Kept queue snapshots by pipeline name, read with ``read(name, key)`` (the key of the viewer whose
    page asked first; every viewer of a page holds the read scope the snapshot needs)."""

    def __init__(self, read: Reader, clock: Callable[[], float] = time.monotonic):
        self._read, self._clock = read, clock
        self._kept: dict[str, tuple[float, dict[str, Any]]] = {}
        self._reading: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def get(self, name: str, key: str) -> dict[str, Any]:
        """The pipeline's snapshot: a kept one if recent enough (renewed in the background once past
        ``FRESH_S``), else one read now."""
        kept = self._kept.get(name)
        if kept is not None:
            age = self._clock() - kept[0]
            if age <= STALE_S:
                if age > FRESH_S:
                    self._renew(name, key)
                return kept[1]
        return await asyncio.shield(self._renew(name, key))

    def forget(self, name: str) -> None:
        """Drop the pipeline's kept snapshot: the next page reads one."""
        self._kept.pop(name, None)

    def _renew(self, name: str, key: str) -> asyncio.Task[dict[str, Any]]:
        """The read under way for the pipeline, or a new one: one at a time per pipeline."""
        task = self._reading.get(name)
        if task is None:
            task = asyncio.create_task(self._take(name, key))
            self._reading[name] = task
            task.add_done_callback(lambda done: self._done(name, done))
        return task

    async def _take(self, name: str, key: str) -> dict[str, Any]:
        started = self._clock()
        snapshot = await self._read(name, key)
        self._kept[name] = (started, snapshot)
        return snapshot

    def _done(self, name: str, task: asyncio.Task[dict[str, Any]]) -> None:
        self._reading.pop(name, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # a page waiting on it shows the problem; a renewal nobody waits on is only logged
            log.info("queue snapshot of %s not renewed: %s", name, exc)


def api_reader(api_app: ASGIApp) -> Reader:
    """Snapshots read from the API's ``/queues`` route with the viewer's key."""

    async def read(name: str, key: str) -> dict[str, Any]:
        async with Api(api_app, key) as my:
            found: dict[str, Any] = await my.get(f"/api/v1/pipelines/{quote(name)}/queues")
            return found

    return read


async def kept_snapshot(request: Request, viewer: Viewer, name: str) -> dict[str, Any]:
    """The pipeline's snapshot for a page (kept, or read now)."""
    snapshots: Snapshots = request.app.state.snapshots
    return await snapshots.get(name, viewer.key)
