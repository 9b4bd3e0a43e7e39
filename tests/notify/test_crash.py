"""A real ``modelyard worker`` process killed (SIGKILL) while a webhook call is in flight: another worker
recovers the delivery and sends it again (the same event id, for the receiver to de-duplicate), then the
next one of the line; nothing is lost and the order holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.context import AppContext
from modelyard.notify import service
from modelyard.notify.schemas import WebhookCreate
from tests.crash.workers import WorkerProcess
from tests.notify.conftest import Receiver, emit, eventually, sqlite_only

pytestmark = sqlite_only


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start(ctx: AppContext, workers: list[WorkerProcess], executor_id: str) -> WorkerProcess:
    worker = WorkerProcess(executor_id, ctx.settings.data_dir, ctx.settings.resolved_database_url())
    worker.env |= {
        "MODELYARD_ALLOW_PRIVATE_URLS": "true",
        "MODELYARD_NOTIFY_POLL_SECONDS": "0.05",
        "MODELYARD_NOTIFY_TIMEOUT_SECONDS": "30",
    }
    workers.append(worker.start(ctx))
    return worker


def test_a_worker_killed_mid_call_loses_nothing(
    ctx: AppContext, receiver: Receiver, workers: list[WorkerProcess]
) -> None:
    with ctx.uow() as session:
        hook = WebhookCreate(kind="webhook", url=receiver.url, events=[])
        sub = service.create_subscription(session=session, settings=ctx.settings, model="roofs", data=hook).id
    receiver.gate.clear()  # calls hang until released
    first = emit(ctx, "geo.run.succeeded", "roofs", run_id="r1")
    second = emit(ctx, "geo.results.available", "roofs", run_id="r1")
    doomed = start(ctx, workers, "notify-doomed")
    eventually(receiver.received, 60)  # the first call is in flight, held open
    doomed.kill()
    receiver.gate.set()
    start(ctx, workers, "notify-rescuer")

    def delivered() -> list[tuple[int, str]] | None:
        with ctx.uow() as session:
            items, _ = service.list_deliveries(session=session, model="roofs", subscription_id=sub)
        states = sorted((d.event_id, d.state) for d in items)
        return states if states == [(first, "delivered"), (second, "delivered")] else None

    eventually(delivered, 60)
    ids = [int(g.headers["X-Modelyard-Event-Id"]) for g in receiver.received()]
    assert ids[0] == first and ids.count(first) >= 2 and ids[-1] == second  # sent again, then the next
    assert ids.index(second) > max(i for i, e in enumerate(ids) if e == first)
