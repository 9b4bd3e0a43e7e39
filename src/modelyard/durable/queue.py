"""The one claimed-work queue: work waits as rows of a part's own table and every worker claims some.

A part declares a ``ClaimedQueue`` (its table, the claim-id and claimed-at columns, which rows wait,
what a claim and a release set, order, batch size, per-worker slots, poll interval, claim timeout) and
marks the durable workflow that runs one claim with ``runs(queue)``. From that declaration come the
claim (one guarded UPDATE; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, see ``Database.claimable``), the
release of a claim whose workflow could not start, the stale-claim sweep every worker's heartbeat runs,
the worker's ``ClaimLoop`` (``durable.loop``) and the figures of the queue page (``Monitor``).

Two ways to claim: ``batch_size`` rows under one claim id (jobs, stage runs; one workflow per batch
amortises durability), or, with ``batch_size=None``, one claim id per row, several rows per claim call
(chunks). A queue whose claims need more than its order (stage runs: each stage its own limits, deeper
stages first) gives a ``policy``: the groups of waiting rows to claim from now, in order.

A claim's id is its workflow's id, so starting it twice is a no-op, and a claim whose workflow never
started (its worker died between the two) or ended without taking its rows is released by the sweep
after the queue's claim timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import InstrumentedAttribute

from modelyard.db import new_id, utcnow
from modelyard.durable.status import WorkState

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.settings import Settings

log = logging.getLogger("modelyard.durable.queue")
SWEPT_PER_CALL = 200
Key = tuple[Any, ...]
# workflow ids -> the state of each that exists (``Dispatcher.statuses``)
StatusLookup = Callable[[list[str]], dict[str, WorkState]]


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claim: its id (the id of the workflow that runs it), the keys of its rows, how many rows."""

    claim_id: str
    keys: list[Key]
    count: int


@dataclass(frozen=True, slots=True)
class Group:
    """Waiting rows a policy lets this worker claim now: those matching ``where``, in at most ``claims``
    claims of ``size`` rows (the queue's batch size if None); ``rows`` waiting, if known, ends it early."""

    where: tuple[ColumnElement[bool], ...] = ()
    claims: int = 1 << 30
    size: int | None = None
    rows: int | None = None


# (ctx, free slots of this worker) -> the groups to claim from, in order
Policy = Callable[["AppContext", int], list[Group]]


@dataclass(frozen=True, slots=True)
class Monitor:
    """How the queue page reads a queue's table: its state column, the state values of waiting, running,
    succeeded and failed rows (and of dead letters: failed every attempt), and when a row started waiting
    and finished."""

    state: InstrumentedAttribute[Any]
    waiting_since: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None]
    finished_at: InstrumentedAttribute[datetime | None]
    waiting: str
    running: str
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    dead: tuple[str, ...] = ()


def _nothing() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, eq=False)
class ClaimedQueue:
    """A table whose rows wait to be claimed by workers, each claim run by one durable workflow."""

    name: str  # the queue's name (``modelyard worker --queues``, the queue page)
    model: type[Any]
    key: tuple[InstrumentedAttribute[Any], ...]  # columns naming one row; one column for batch claims
    claim_id: InstrumentedAttribute[str | None]
    claimed_at: InstrumentedAttribute[datetime | None]
    # rows that wait to be claimed (a function: conditions may read the clock)
    waiting: Callable[[], tuple[ColumnElement[bool], ...]]
    # rows claimed whose workflow has not taken them yet: only these are released
    claimed: Callable[[], tuple[ColumnElement[bool], ...]]
    order_by: tuple[Any, ...]
    # the workflow's arguments for a claim (after the claim id, if ``pass_claim_id``)
    args: Callable[[Claimed], tuple[Any, ...]]
    slots: Callable[[Settings], int]  # claims in flight per worker
    poll_seconds: Callable[[Settings], float]
    claim_timeout: Callable[[Settings], float]  # after this a claim whose workflow is not running is stale
    batch_size: Callable[[Settings], int] | None = None  # rows per claim; None: one claim per row
    on_claim: Callable[[], dict[str, Any]] = _nothing  # set on claimed rows, besides the claim columns
    on_release: Callable[[], dict[str, Any]] = _nothing  # set on released rows, besides the claim id
    eligible: Callable[[Select[Any]], Select[Any]] | None = None  # joins/conditions of a per-row read
    policy: Policy | None = None
    parallel_starts: bool = False  # start a round's claims side by side (starts write DBOS's tables)
    needs_keys: bool = True  # whether ``args`` reads ``Claimed.keys`` (else a batch claim only counts)
    pass_claim_id: bool = True  # whether the workflow's first argument is the claim id
    monitor: Monitor | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and len(self.key) != 1:
            raise ValueError(f"queue {self.name}: batch claims need a one-column key")
        DECLARED[self.name] = self

    # -- reads -------------------------------------------------------------------------------------

    def any_waiting(self, ctx: AppContext) -> bool:
        """Whether any row waits (a read: an idle worker's polls never take SQLite's write lock)."""
        with ctx.uow() as session:
            found = session.scalar(select(self.key[0]).where(*self.waiting()).limit(1))
        return found is not None

    # -- claims ------------------------------------------------------------------------------------

    def claim_batch(
        self, ctx: AppContext, size: int, where: tuple[ColumnElement[bool], ...] = ()
    ) -> Claimed | None:
        """Claim up to ``size`` waiting rows (matching ``where``), in order, under one new claim id."""
        claim_id, now = new_id(), utcnow()
        column = self.key[0]
        waiting = self.waiting()
        rows = ctx.db.claimable(select(column).where(*waiting, *where).order_by(*self.order_by).limit(size))
        with ctx.uow() as session:
            count = session.execute(  # type: ignore[attr-defined]
                update(self.model)
                .where(column.in_(select(rows.c[column.key])), *waiting)
                .values({self.claim_id: claim_id, self.claimed_at: now, **self.on_claim()})
                .execution_options(synchronize_session=False)
            ).rowcount
            keys: list[Key] = []
            if self.needs_keys:
                found = session.scalars(
                    select(column).where(self.claim_id == claim_id).order_by(*self.order_by)
                )
                keys = [(k,) for k in found]
                count = len(keys)
            elif count < 0:  # SQLite's driver does not count the rows of a statement that starts with WITH
                count = session.scalar(select(func.count()).where(self.claim_id == claim_id)) or 0
        return Claimed(claim_id, keys, count) if count else None

    def claim_rows(
        self, ctx: AppContext, limit: int, where: tuple[ColumnElement[bool], ...] = ()
    ) -> list[Claimed]:
        """Claim up to ``limit`` waiting rows, in order, each under its own claim id. Each claim is a
        guarded UPDATE, so of two workers that saw the same row only one gets it."""
        query = select(*self.key).where(*self.waiting(), *where)
        if self.eligible is not None:
            query = self.eligible(query)
        with ctx.uow() as session:
            found = session.execute(query.order_by(*self.order_by).limit(limit)).all()
        if not found:
            return []
        claimed, now = [], utcnow()
        with ctx.uow() as session:
            for row in found:
                claim_id = new_id()
                won = session.execute(  # type: ignore[attr-defined]
                    update(self.model)
                    .where(*(c == v for c, v in zip(self.key, row, strict=True)), *self.waiting())
                    .values({self.claim_id: claim_id, self.claimed_at: now, **self.on_claim()})
                    .execution_options(synchronize_session=False)
                ).rowcount
                if won:
                    claimed.append(Claimed(claim_id, [tuple(row)], 1))
        return claimed

    def claim(self, ctx: AppContext, free: int) -> list[tuple[str, tuple[Any, ...]]]:
        """Claim up to ``free`` claims' worth of waiting rows: (claim id, workflow arguments) of each."""
        if self.policy is None:
            if not self.any_waiting(ctx):
                return []
            groups = [Group()]
        else:
            groups = self.policy(ctx, free)
        out: list[tuple[str, tuple[Any, ...]]] = []
        for group in groups:
            if self.batch_size is None:
                limit = min(group.claims, free - len(out))
                rows = self.claim_rows(ctx, limit, group.where) if limit > 0 else []
                out.extend((c.claim_id, self.args(c)) for c in rows)
                continue
            size = group.size or self.batch_size(ctx.settings)
            made, left = 0, group.rows
            while made < group.claims and len(out) < free and (left is None or left > 0):
                found = self.claim_batch(ctx, size, group.where)
                if found is None:
                    break
                out.append((found.claim_id, self.args(found)))
                made += 1
                left = None if left is None else left - found.count
            if len(out) >= free:
                break
        return out

    def release(self, ctx: AppContext, claim_ids: list[str]) -> int:
        """Make the rows of these claims that their workflow has not taken waiting again; how many."""
        if not claim_ids:
            return 0
        with ctx.uow() as session:
            return int(
                session.execute(  # type: ignore[attr-defined]
                    update(self.model)
                    .where(self.claim_id.in_(claim_ids), *self.claimed())
                    .values({self.claim_id: None, **self.on_release()})
                    .execution_options(synchronize_session=False)
                ).rowcount
            )

    def sweep(self, ctx: AppContext, status: StatusLookup) -> int:
        """Release the claims older than the claim timeout whose rows were not taken and whose workflow
        never started or has ended (at most 200 claims a call); how many rows."""
        cutoff = utcnow() - timedelta(seconds=self.claim_timeout(ctx.settings))
        query = (
            select(self.claim_id)
            .where(*self.claimed(), self.claim_id.is_not(None), self.claimed_at < cutoff)
            .distinct()
        )
        with ctx.uow() as session:
            claims = [str(c) for c in session.scalars(query.limit(SWEPT_PER_CALL)) if c is not None]
        if not claims:
            return 0
        states = status(claims)
        stale = [c for c in claims if c not in states or states[c].is_final()]
        count = self.release(ctx, stale)
        if count:
            log.warning(
                "freed the rows of stale claims",
                extra={"queue": self.name, "claims": len(stale), "rows": count},
            )
        return count


# Every claimed queue declared (at import of the module that declares it), by name.
DECLARED: dict[str, ClaimedQueue] = {}
