"""A fourth claimed queue, declared over a test table, runs through claim -> workflow -> done and has its
stale claims swept, with no claim code of its own: the declaration below is all of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from dbos import DBOS
from sqlalchemy import String, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.db import new_id, utcnow
from modelyard.durable import ClaimedQueue, ClaimLoop, Durable, WorkState, current, runs, sweep_claims
from modelyard.durable.loop import WORKFLOWS
from modelyard.durable.queue import DECLARED
from modelyard.settings import Settings


class ParcelBase(DeclarativeBase):
    """Tables of these tests only (not modelyard's metadata, so migrations never see them)."""


class Parcel(ParcelBase):
    """Something to deliver: waits, is claimed in pairs, is delivered by the claim's workflow."""

    __tablename__ = "test_parcels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(20), default="waiting")
    claim_id: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_by: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


PARCELS = ClaimedQueue(
    name="tests.parcels",
    model=Parcel,
    key=(Parcel.id,),
    claim_id=Parcel.claim_id,
    claimed_at=Parcel.claimed_at,
    waiting=lambda: (Parcel.state == "waiting", Parcel.claim_id.is_(None)),
    claimed=lambda: (Parcel.state == "waiting",),
    order_by=(Parcel.created_at, Parcel.id),
    args=lambda c: ([k[0] for k in c.keys],),
    batch_size=lambda _s: 2,
    slots=lambda _s: 2,
    poll_seconds=lambda _s: 0.05,
    claim_timeout=lambda _s: 60.0,
    on_release=lambda: {"claimed_at": None},
)


@DBOS.step(name="tests.parcels.deliver")
def deliver_step(claim_id: str, parcel_ids: list[str]) -> int:
    with current().uow() as session:
        return int(
            session.execute(  # type: ignore[attr-defined]
                update(Parcel)
                .where(Parcel.id.in_(parcel_ids), Parcel.claim_id == claim_id, Parcel.state == "waiting")
                .values(state="delivered", delivered_by=claim_id)
            ).rowcount
        )


@DBOS.workflow(name="tests.parcels.run")
def deliver(claim_id: str, parcel_ids: list[str]) -> int:
    return deliver_step(claim_id, parcel_ids)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    """A context whose database has the parcels table, with the parcels queue run by ``deliver``."""
    context = build_context(settings)
    ParcelBase.metadata.create_all(context.engine)
    runs(PARCELS)(deliver)
    yield context
    WORKFLOWS.pop(PARCELS.name, None)
    context.close()


def add_parcels(ctx: AppContext, n: int) -> list[str]:
    parcels = [Parcel(id=f"p{i}", created_at=utcnow() + timedelta(microseconds=i)) for i in range(n)]
    with ctx.uow() as session:
        session.add_all(parcels)
    return [p.id for p in parcels]


def parcels(ctx: AppContext) -> dict[str, tuple[str, str | None]]:
    with ctx.uow() as session:
        return {p.id: (p.state, p.claim_id) for p in session.scalars(select(Parcel))}


def test_a_declared_queue_is_known_by_name() -> None:
    assert DECLARED[PARCELS.name] is PARCELS


def test_a_batch_queue_over_a_composite_key_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="one-column key"):
        ClaimedQueue(**{**PARCELS.__dict__, "name": "tests.bad", "key": (Parcel.id, Parcel.state)})
    assert "tests.bad" not in DECLARED


def test_a_claim_takes_a_batch_in_order_once(ctx: AppContext) -> None:
    ids = add_parcels(ctx, 3)
    first, second = PARCELS.claim_batch(ctx, 2), PARCELS.claim_batch(ctx, 2)
    assert first is not None and second is not None
    assert [k[0] for k in first.keys] == ids[:2] and [k[0] for k in second.keys] == ids[2:]
    assert PARCELS.claim_batch(ctx, 2) is None and not PARCELS.any_waiting(ctx)


def test_a_claim_that_cannot_start_gives_its_rows_back(ctx: AppContext) -> None:
    add_parcels(ctx, 3)

    def refuse(claim_id: str, *args: Any) -> None:
        raise ConnectionError("system database unreachable")

    loop = ClaimLoop(ctx, PARCELS, refuse)
    assert loop.dispatch_once() == 2  # two claims (its two slots), neither started
    assert loop.started == 0 and loop.inflight == 0
    assert all(claim is None for _, claim in parcels(ctx).values())


def eventually(probe: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_fourth_queue_runs_claims_through_its_workflow_and_sweeps_stale_ones(ctx: AppContext) -> None:
    ids = add_parcels(ctx, 5)
    # a worker claimed two parcels and died before starting their workflow
    lost = PARCELS.claim_batch(ctx, 2)
    assert lost is not None
    assert sweep_claims(ctx) == 0  # too young: its workflow may be starting right now
    with ctx.uow() as session:
        session.execute(update(Parcel).values(claimed_at=utcnow() - timedelta(minutes=5)))
    assert sweep_claims(ctx) == 2  # never started: the parcels wait again
    assert all(claim is None for _, claim in parcels(ctx).values())

    durable = Durable(ctx, executor_id="parcels-worker", queues=[PARCELS.name])
    durable.launch()
    try:
        eventually(lambda: all(state == "delivered" for state, _ in parcels(ctx).values()))
    finally:
        durable.shutdown()
    with ctx.uow() as session:
        delivered = dict(session.execute(select(Parcel.id, Parcel.delivered_by)).all())
        claims = session.scalar(select(func.count(func.distinct(Parcel.claim_id))))
    assert sorted(delivered) == ids and claims == 3  # batches of two: 2 + 2 + 1
    statuses = ctx.dispatcher.get().statuses(sorted({c for c in delivered.values() if c}))
    assert set(statuses.values()) == {WorkState.SUCCEEDED}  # one workflow per claim, each ended
    assert lost.claim_id not in statuses  # the lost claim never became a workflow
