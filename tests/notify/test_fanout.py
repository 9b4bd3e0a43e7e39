"""The fan-out and the delivery queue's claims, without DBOS: which subscriptions get which events, the
cursor (nothing twice, nothing lost), and the head-of-line rule that keeps each subscriber's events in
order. On SQLite and PostgreSQL: the claims are SQL (a correlated NOT EXISTS in a guarded UPDATE)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.geo import aois, runs, scenes
from modelyard.geo.schemas import AoiCreate
from modelyard.notify import dispatch, fanout, runner, service, sinks
from modelyard.notify.models import Cursor, Delivery, DeliveryState
from modelyard.notify.schemas import MqttCreate, NatsCreate, WebhookCreate
from modelyard.settings import Settings
from tests.geo.conftest import s2_item, square
from tests.notify.conftest import emit, sqlite_only


def subscribe(ctx: AppContext, model: str, data: Any) -> str:
    with ctx.uow() as session:
        return service.create_subscription(session=session, settings=ctx.settings, model=model, data=data).id


def hook(*events: str) -> WebhookCreate:
    return WebhookCreate(kind="webhook", url="http://127.0.0.1:9/hook", events=list(events))  # type: ignore[arg-type]


def round_(ctx: AppContext) -> int | None:
    """Claim the cursor and run one round; None if it was not due."""
    claims = dispatch.FANOUT.claim(ctx, 1)
    if not claims:
        return None
    return fanout.fan_out(ctx, claims[0][0])


def deliveries(ctx: AppContext) -> list[tuple[str, int, str]]:
    with ctx.uow() as session:
        rows = session.execute(
            select(Delivery.subscription_id, Delivery.event_id, Delivery.event_type).order_by(
                Delivery.event_id, Delivery.subscription_id
            )
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@sqlite_only
def test_each_event_goes_to_the_subscriptions_of_its_model_that_want_it(ctx: AppContext) -> None:
    before = emit(ctx, "geo.run.queued", "roofs", run_id="r0")  # before any subscription: nobody gets it
    every = subscribe(ctx, "roofs", hook())
    results = subscribe(ctx, "roofs", hook("results.available", "run.failed"))
    on_nats = subscribe(ctx, "roofs", NatsCreate(kind="nats", subject="roofs.events"))
    other = subscribe(ctx, "ships", MqttCreate(kind="mqtt", topic="ships/events"))
    queued = emit(ctx, "geo.run.queued", "roofs", run_id="r1")
    done = emit(ctx, "geo.results.available", "roofs", run_id="r1", items=3)
    emit(ctx, "jobs.queued", "roofs")  # not a topic event
    meta = emit(ctx, "registry.metadata.changed", "ships", metadata={"a": 1})
    assert round_(ctx) == 6
    expected = [
        (every, queued, "run.queued"),
        (on_nats, queued, "run.queued"),
        (every, done, "results.available"),
        (results, done, "results.available"),
        (on_nats, done, "results.available"),
        (other, meta, "metadata.changed"),
    ]
    assert sorted(deliveries(ctx), key=lambda d: (d[1], d[0])) == sorted(expected, key=lambda d: (d[1], d[0]))
    assert before < queued
    with ctx.uow() as session:
        body = session.scalars(select(Delivery.body).where(Delivery.event_id == done)).first()
    assert body is not None
    assert (body["id"], body["type"], body["model"], body["data"]["items"]) == (
        str(done),
        "results.available",
        "roofs",
        3,
    )


@sqlite_only
def test_a_run_cancelled_through_the_geo_service_is_told_as_run_cancelled(ctx: AppContext) -> None:
    aoi = AoiCreate(name="harbour", geometry=square(5.2, 45.2, 0.5), target_resolution=10, model="ships")
    aois.create_aoi(ctx, aoi)
    (match,) = scenes.post_scenes(ctx, s2_item()).scenes[0].matches
    cancelled_only = subscribe(ctx, "ships", hook("run.cancelled"))
    runs.cancel_run(ctx, match.run_id)
    assert round_(ctx) == 1
    (found,) = deliveries(ctx)
    assert (found[0], found[2]) == (cancelled_only, "run.cancelled")
    with ctx.uow() as session:
        body = session.scalars(select(Delivery.body)).one()
    assert (body["type"], body["model"]) == ("run.cancelled", "ships")
    assert (body["data"]["run_id"], body["data"]["state"]) == (match.run_id, "cancelled")


def test_the_cursor_moves_with_the_deliveries_so_nothing_is_written_twice(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = subscribe(ctx, "roofs", hook())
    first = emit(ctx, "geo.run.started", "roofs", run_id="r1")
    assert round_(ctx) == 1
    assert round_(ctx) is None  # nothing new: the cursor row is not due
    emit(ctx, "jobs.progress", "job-1")
    assert round_(ctx) is None  # other parts' events alone run no round...
    monkeypatch.setattr(dispatch, "SKIP_AHEAD", 1)
    skipped = emit(ctx, "jobs.progress", "job-1")
    assert round_(ctx) == 0  # ...until they pile up: then one moves past them
    with ctx.uow() as session:
        assert session.get_one(Cursor, fanout.CURSOR).position == skipped
    second = emit(ctx, "geo.run.succeeded", "roofs", run_id="r1")
    assert round_(ctx) == 1
    assert deliveries(ctx) == [(sub, first, "run.started"), (sub, second, "run.succeeded")]
    with ctx.uow() as session:
        assert session.get_one(Cursor, fanout.CURSOR).position == second


@sqlite_only
def test_a_round_whose_claim_was_lost_writes_nothing(ctx: AppContext) -> None:
    subscribe(ctx, "roofs", hook())
    emit(ctx, "geo.run.started", "roofs", run_id="r1")
    claim_id = dispatch.FANOUT.claim(ctx, 1)[0][0]
    dispatch.FANOUT.release(ctx, [claim_id])  # e.g. swept as stale; another worker may claim it now
    assert fanout.fan_out(ctx, claim_id) == 0
    assert deliveries(ctx) == []
    assert round_(ctx) == 1


def claimable(ctx: AppContext) -> list[tuple[str, int]]:
    """Claim every delivery that may go now; (subscription, event id) of each, claimed as 'sending'."""
    claims = dispatch.DELIVERIES.claim(ctx, 50)
    with ctx.uow() as session:
        rows = [session.get_one(Delivery, args[0]) for _, args in claims]
        return sorted((r.subscription_id, r.event_id) for r in rows)


def settle(ctx: AppContext, sub: str, event_id: int, sent: sinks.Sent) -> str:
    with ctx.uow() as session:
        row = session.scalars(
            select(Delivery).where(Delivery.subscription_id == sub, Delivery.event_id == event_id)
        ).one()
        claim_id, delivery_id = row.claim_id, row.id
        values = runner.outcome(ctx.settings, row.attempts + 1, sent)
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(values))
    assert claim_id is not None
    return str(values["state"])


def test_only_the_head_of_each_subscriptions_line_is_claimed(ctx: AppContext) -> None:
    a = subscribe(ctx, "roofs", hook())
    b = subscribe(ctx, "ships", hook())
    e1, e2, e3 = (emit(ctx, "geo.run.queued", "roofs", run_id=f"r{i}") for i in range(3))
    s1 = emit(ctx, "geo.run.queued", "ships", run_id="s1")
    assert round_(ctx) == 4
    assert claimable(ctx) == sorted([(a, e1), (b, s1)])
    assert claimable(ctx) == []  # e2 waits while e1 is being sent
    # e1 fails: it goes back with a later next attempt, and e2 still waits behind it
    assert settle(ctx, a, e1, sinks.Sent(False, status=500, error="HTTP 500")) == DeliveryState.PENDING
    assert claimable(ctx) == []
    with ctx.uow() as session:
        session.execute(update(Delivery).values(next_attempt_at=utcnow()))
    assert claimable(ctx) == [(a, e1)]
    assert settle(ctx, a, e1, sinks.Sent(True, status=200)) == DeliveryState.DELIVERED
    assert claimable(ctx) == [(a, e2)]
    # a dead delivery does not hold the line
    assert settle(ctx, a, e2, sinks.Sent(False, error="refused", permanent=True)) == DeliveryState.DEAD
    assert claimable(ctx) == [(a, e3)]


def test_backoff_doubles_up_to_the_cap_and_the_last_attempt_is_dead() -> None:
    s = Settings(
        notify_retry_seconds=1.0,
        notify_retry_max_seconds=5.0,
        notify_max_attempts=4,
        _env_file=None,  # type: ignore[call-arg]
    )
    assert [runner.backoff_seconds(s, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    failed = sinks.Sent(False, status=503, error="HTTP 503")
    assert [runner.outcome(s, n, failed)["state"] for n in (1, 3, 4)] == ["pending", "pending", "dead"]
    assert runner.outcome(s, 1, sinks.Sent(False, error="x", permanent=True))["state"] == "dead"


@sqlite_only
def test_a_restarted_dispatcher_resumes_at_the_cursor(ctx: AppContext) -> None:
    sub = subscribe(ctx, "roofs", hook())
    first = emit(ctx, "geo.run.queued", "roofs", run_id="r1")
    assert round_(ctx) == 1
    ctx.close()  # the process stops; another starts on the same database
    again = build_context(ctx.settings)
    try:
        second = emit(again, "geo.run.started", "roofs", run_id="r1")
        with again.uow() as session:
            session.execute(update(Cursor).values(due_at=utcnow()))
        assert round_(again) == 1
        assert deliveries(again) == [(sub, first, "run.queued"), (sub, second, "run.started")]
    finally:
        again.close()


@sqlite_only
def test_finished_deliveries_past_their_retention_are_trimmed(ctx: AppContext) -> None:
    subscribe(ctx, "roofs", hook())
    for i in range(3):
        emit(ctx, "geo.run.queued", "roofs", run_id=f"r{i}")
    assert round_(ctx) == 3
    old = utcnow() - timedelta(hours=ctx.settings.notify_delivery_retention_hours + 1)
    with ctx.uow() as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.event_id)))
        session.execute(
            update(Delivery).where(Delivery.id == ids[0]).values(state="delivered", finished_at=old)
        )
        session.execute(
            update(Delivery).where(Delivery.id == ids[1]).values(state="dead", finished_at=utcnow())
        )
        session.execute(
            update(Delivery).where(Delivery.id == ids[2]).values(finished_at=old)
        )  # still pending
    assert runner.trim(ctx) == 1
    with ctx.uow() as session:
        assert list(session.scalars(select(Delivery.id).order_by(Delivery.event_id))) == ids[1:]


@sqlite_only
def test_one_claim_sends_down_its_line_in_order_and_stops_at_a_failure(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = subscribe(ctx, "roofs", hook())
    b = subscribe(ctx, "ships", hook())
    ids = [emit(ctx, "geo.run.queued", "roofs", run_id=f"r{i}") for i in range(4)]
    other = emit(ctx, "geo.run.queued", "ships", run_id="s1")
    assert round_(ctx) == 5
    sent: list[str] = []

    def fake_send(_ctx: AppContext, _target: sinks.Target, body: dict[str, Any]) -> sinks.Sent:
        sent.append(body["id"])
        return sinks.Sent(body["id"] != str(ids[2]), status=200)

    monkeypatch.setattr(sinks, "send", fake_send)
    claims = dispatch.DELIVERIES.claim(ctx, 1)  # the oldest head: a's first
    assert runner.deliver(ctx, claims[0][0]) == {"delivered": 2, "pending": 1}
    assert sent == [str(i) for i in ids[:3]]  # in order, one claim, stopped at the failure
    with ctx.uow() as session:
        rows = session.execute(
            select(Delivery.event_id, Delivery.state)
            .where(Delivery.subscription_id == a)
            .order_by(Delivery.event_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (ids[0], "delivered"),
        (ids[1], "delivered"),
        (ids[2], "pending"),
        (ids[3], "pending"),
    ]
    assert claimable(ctx) == [(b, other)]  # a's line waits for its retry; b's was never touched


@sqlite_only
def test_a_claim_whose_worker_died_goes_back_to_the_line(ctx: AppContext) -> None:
    a = subscribe(ctx, "roofs", hook())
    first = emit(ctx, "geo.run.queued", "roofs", run_id="r1")
    assert round_(ctx) == 1
    assert claimable(ctx) == [(a, first)]  # claimed, then the worker dies before its workflow runs
    ctx.settings.notify_claim_timeout_seconds = 0.0
    assert dispatch.DELIVERIES.sweep(ctx, lambda _ids: {}) == 1  # no workflow of that claim exists
    assert claimable(ctx) == [(a, first)]  # sent by whoever claims it next, still first in line
