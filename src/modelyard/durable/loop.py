"""A worker's loop over one ``ClaimedQueue``: claim and start while this process has room, woken when
work is queued here; and ``runs(queue)``, which names the durable workflow that runs a queue's claims.

Durability is amortised: one workflow covers a whole claim (a batch of rows, or one row). Claims are
started with the claim id as workflow id, so a repeat is a no-op. Code that makes new work in this
process can claim some of it itself, in the transaction that creates it: it ``reserve``s free slots
first and then ``hand_over``s what it claimed, which the loop starts at once (no poll, no second claim).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from modelyard.durable.queue import ClaimedQueue

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.durable.loop")
# While work comes and goes, look again this often (not every ``poll_seconds``): work queued by another
# process is then seen within ~10 ms; after ``BUSY_WINDOW_S`` without any, idle polling resumes.
BUSY_POLL_S, BUSY_WINDOW_S = 0.01, 2.0
# starter(claim id, *workflow arguments): starts the claim's workflow, returns its future (None if a
# workflow of that id exists already)
Starter = Callable[..., "Future[Any] | None"]
Claim = tuple[str, tuple[Any, ...]]
W = TypeVar("W", bound=Callable[..., Any])
# the workflow that runs each claim of a queue, by queue name (filled by ``runs`` at import)
WORKFLOWS: dict[str, tuple[ClaimedQueue, Callable[..., Any]]] = {}


def runs(queue: ClaimedQueue) -> Callable[[W], W]:
    """Mark the decorated DBOS workflow as the one that runs each claim of ``queue``: every launched
    worker listening to ``queue.name`` then runs a ``ClaimLoop`` for it, and every heartbeat sweeps it."""

    def register(workflow: W) -> W:
        WORKFLOWS[queue.name] = (queue, workflow)
        return workflow

    return register


def start_claimed(claim_id: str, workflow: Callable[..., Any], *args: Any) -> Future[Any] | None:
    """Start a claim's workflow in this process, its id the claim id (so a repeat is a no-op: it returns
    None when a workflow of that id exists already)."""
    from dbos import DBOS, SetWorkflowID

    with SetWorkflowID(claim_id):
        handle = DBOS.start_workflow(workflow, *args)
    future: Future[Any] | None = getattr(handle, "future", None)
    return future


def starter(queue: ClaimedQueue, workflow: Callable[..., Any]) -> Starter:
    """The starter of ``queue``'s claims in this process: ``workflow(claim id, *args)``, or
    ``workflow(*args)`` if the queue does not pass the claim id."""

    def start(claim_id: str, *args: Any) -> Future[Any] | None:
        if queue.pass_claim_id:
            return start_claimed(claim_id, workflow, claim_id, *args)
        return start_claimed(claim_id, workflow, *args)

    return start


class ClaimLoop:
    """Claims and starts a queue's work in this process while there is room; woken when work is queued
    here. ``slots`` and ``parallel_starts`` default to the queue's."""

    def __init__(
        self,
        ctx: AppContext,
        queue: ClaimedQueue,
        starter: Starter,
        *,
        slots: int | None = None,
        parallel_starts: bool | None = None,
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.starter = starter
        self.slots = slots or queue.slots(ctx.settings)
        self.poll_seconds = queue.poll_seconds(ctx.settings)
        parallel = queue.parallel_starts if parallel_starts is None else parallel_starts
        self._starts = ThreadPoolExecutor(4, thread_name_prefix="claims-start") if parallel else None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._inflight = 0
        self._reserved = 0  # slots held by reserve() until hand_over()
        self._handed: list[Claim] = []
        self._active_at = 0.0  # monotonic time of the last start or finish here
        self.started = 0

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
        """Claims started here and not finished."""
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

    def serve(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set, findable meanwhile in ``ctx.claim_loops`` (to be woken)."""
        self.ctx.claim_loops[self.queue.name] = self
        try:
            self.run(stop)
        finally:
            self.ctx.claim_loops.pop(self.queue.name, None)

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    started = self.dispatch_once()
                except Exception:
                    log.exception("dispatch failed", extra={"queue": self.queue.name})
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
        """Start what was handed over, then claim and start as many claims as free slots allow; returns
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
        claims = self.queue.claim(self.ctx, free)
        if self._starts is not None and len(claims) > 1:
            # starting a workflow writes to the system database: start claims side by side
            list(self._starts.map(self._start, claims))
        else:
            for claim in claims:
                self._start(claim)
        return len(handed) + len(claims)

    def _start(self, claim: Claim) -> None:
        claim_id, args = claim
        try:
            future = self.starter(claim_id, *args)
        except Exception:
            log.exception(
                "could not start a claim; its rows wait again",
                extra={"queue": self.queue.name, "claim": claim_id},
            )
            self.queue.release(self.ctx, [claim_id])
            return
        self.started += 1
        if future is not None:
            with self._lock:
                self._inflight += 1
            future.add_done_callback(self._finished)


def wake(ctx: AppContext, queue: str) -> None:
    """Nudge this process's loop over ``queue`` (if it runs one): work was just queued here."""
    found = ctx.claim_loops.get(queue)
    if found is not None:
        found.wake()
