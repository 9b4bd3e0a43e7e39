"""The loop that turns rows waiting in our own tables into durable work: claim a batch, start one DBOS
workflow for it (its id is the batch id, so a repeat is a no-op), repeat while this process has room.

Durability is amortised: one workflow covers a whole batch instead of one workflow per item. A claim is
an atomic UPDATE of the waiting rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two workers never
claim the same row; rows claimed by a process that died before starting the batch's workflow are made
waiting again by the owner's sweep after a timeout, and a started workflow is recovered by another worker
(see ``durable``). Jobs (``jobs.dispatch``) and pipeline stages (``pipelines.dispatch``) use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from modelyard.db import utcnow

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.claims")
# While work comes and goes, look again this often (not every ``poll_seconds``): work queued by another
# process is then seen within ~10 ms; after ``BUSY_WINDOW_S`` without any, idle polling resumes.
BUSY_POLL_S, BUSY_WINDOW_S = 0.01, 2.0
# starter(batch id, *arguments of that claim): starts the batch's workflow, returns its future (None if a
# workflow of that id exists already)
Starter = Callable[..., "Future[Any] | None"]
Claim = tuple[str, tuple[Any, ...]]
# workflow ids -> DBOS status of each that exists
StatusLookup = Callable[[list[str]], dict[str, str]]
# DBOS statuses after which a claim's workflow will not take its items any more.
ENDED = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
SWEPT_PER_CALL = 200


def sweep_stale(
    ctx: AppContext,
    claim: InstrumentedAttribute[Any],
    claimed_at: InstrumentedAttribute[Any],
    waiting: Any,
    timeout_seconds: float,
    status: StatusLookup,
    unclaim: Callable[[list[str]], int],
    what: str,
) -> int:
    """Free the items of claims older than ``timeout_seconds`` whose items still wait (``waiting``) and
    whose workflow never started or has ended (at most 200 claims a call); how many items."""
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    query = select(claim).where(waiting, claim.is_not(None), claimed_at < cutoff).distinct()
    with ctx.uow() as session:
        claims = [str(c) for c in session.scalars(query.limit(SWEPT_PER_CALL)) if c is not None]
    if not claims:
        return 0
    statuses = status(claims)
    stale = [c for c in claims if statuses.get(c) is None or statuses[c] in ENDED]
    count = unclaim(stale)
    if count:
        log.warning(
            "freed the items of stale claims", extra={"what": what, "claims": len(stale), "items": count}
        )
    return count


class ClaimLoop:
    """Claims and starts batches in this process while there is room; woken when work is queued here.

    Subclasses say how to claim (``claim``: up to ``free`` new batches, each its id and the arguments its
    workflow starts with) and how to give a batch back (``unclaim``) when its workflow could not start.
    Code that makes new work here can also claim some of it itself, in the transaction that creates it:
    it ``reserve``s free slots first and then ``hand_over``s what it claimed, which the loop starts at
    once (no poll, no second claim).
    """

    what = "work"

    def __init__(
        self, starter: Starter, *, slots: int, poll_seconds: float, parallel_starts: bool = False
    ) -> None:
        self.starter = starter
        self.slots = slots
        self.poll_seconds = poll_seconds
        self._starts = ThreadPoolExecutor(4, thread_name_prefix="claims-start") if parallel_starts else None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight = 0
        self._reserved = 0  # slots held by reserve() until hand_over()
        self._handed: list[Claim] = []
        self._active_at = 0.0  # monotonic time of the last start or finish here
        self.started = 0

    def claim(self, free: int) -> list[Claim]:
        """Claim up to ``free`` batches: (batch id, workflow arguments) of each."""
        raise NotImplementedError

    def unclaim(self, batch_ids: list[str]) -> None:
        """Make the items of these batches waiting again."""
        raise NotImplementedError

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def reserve(self, wanted: int) -> int:
        """Hold up to ``wanted`` free slots for claims the caller is about to make; how many it got."""
        with self._lock:
            got = max(0, min(wanted, self.slots - self._inflight - self._reserved))
            self._reserved += got
            return got

    def hand_over(self, claims: list[Claim], reserved: int) -> None:
        """Start ``claims``, made in ``reserved`` slots held by ``reserve``, at once from the loop's thread
        (outside the caller's context); the slots they do not use are free again."""
        with self._lock:
            self._handed.extend(claims)
            self._reserved -= reserved - len(claims)
        self._wake.set()

    @property
    def inflight(self) -> int:
        """Batches started here and not finished."""
        with self._lock:
            return self._inflight

    def _finished(self, _future: Future[Any]) -> None:
        with self._lock:
            self._inflight -= 1
        self._active_at = time.monotonic()
        self._wake.set()

    def _wait_seconds(self) -> float:
        busy = time.monotonic() - self._active_at < BUSY_WINDOW_S
        return min(self.poll_seconds, BUSY_POLL_S) if busy else self.poll_seconds

    def serve(self, ctx: AppContext, stop: threading.Event, key: str) -> None:
        """Dispatch until ``stop`` is set, findable meanwhile as ``ctx.extras[key]`` (to be woken)."""
        ctx.extras[key] = self
        try:
            self.run(stop)
        finally:
            ctx.extras.pop(key, None)

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    started = self.dispatch_once()
                except Exception:
                    log.exception("dispatch failed", extra={"what": self.what})
                    started = 0
                    stop.wait(1.0)
                if started:
                    self._active_at = time.monotonic()
                else:
                    self._wake.wait(self._wait_seconds())
                    self._wake.clear()
        finally:
            if self._starts is not None:
                self._starts.shutdown()

    def dispatch_once(self) -> int:
        """Start what was handed over, then claim and start as many batches as free slots allow; returns
        how many started."""
        with self._lock:
            handed, self._handed = self._handed, []
        for claim in handed:
            self._start(claim)
            with self._lock:
                self._reserved -= 1
        with self._lock:
            free = self.slots - self._inflight - self._reserved
        if free <= 0:
            return len(handed)
        batches = self.claim(free)
        if self._starts is not None and len(batches) > 1:
            # starting a workflow writes to the system database: start batches side by side
            list(self._starts.map(self._start, batches))
        else:
            for batch_id in batches:
                self._start(batch_id)
        return len(handed) + len(batches)

    def _start(self, claim: Claim) -> None:
        batch_id, args = claim
        try:
            future = self.starter(batch_id, *args)
        except Exception:
            log.exception(
                "could not start a batch; its items wait again", extra={"what": self.what, "batch": batch_id}
            )
            self.unclaim([batch_id])
            return
        self.started += 1
        if future is not None:
            with self._lock:
                self._inflight += 1
            future.add_done_callback(self._finished)
