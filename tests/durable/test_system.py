"""The queue monitor's raw reads of DBOS's ``workflow_status`` table, against a real system database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import APP_NAME, APP_VERSION, DbosDispatcher, WorkState, system
from modelyard.settings import Settings


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = build_context(settings)
    yield context
    context.close()


def _three_enqueued(ctx: AppContext) -> DbosDispatcher:
    """Workflows w0, w1 and w2 enqueued on ``tests.queue`` (no worker takes them)."""
    client = ctx.dispatcher.get()
    assert isinstance(client, DbosDispatcher)
    for n in range(3):
        client.client.enqueue(
            {
                "workflow_name": "tests.nothing",
                "queue_name": "tests.queue",
                "workflow_id": f"w{n}",
                "app_version": APP_VERSION,
                "application_name": APP_NAME,
            }
        )
    return client


def test_enqueued_workflows_are_counted_per_queue_and_state(ctx: AppContext) -> None:
    client = _three_enqueued(ctx)
    now = utcnow()
    counts = system.workflow_counts(ctx, since=now - timedelta(hours=1), recent_since=now)
    [found] = [c for c in counts if c.queue == "tests.queue"]
    assert (found.state, found.count, found.recent) == (WorkState.WAITING, 3, 0)
    assert found.oldest_ms is not None and found.oldest_ms <= now.timestamp() * 1000 + 1000
    assert system.running_work(ctx) == {}  # enqueued is not running
    assert client.statuses(["w0", "nope"]) == {"w0": WorkState.WAITING}


def test_ended_workflows_are_counted_per_queue_and_step(ctx: AppContext) -> None:
    _three_enqueued(ctx)
    since = utcnow() - timedelta(hours=1)
    ended_ms = int(since.timestamp() * 1000) + 125_000  # 2 min 5 s into the window: step 2
    engine, table = ctx.db.system_table("workflow_status")
    with engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {table} SET status = 'SUCCESS', completed_at = :at WHERE workflow_uuid IN ('w0', 'w1')"
            ),
            {"at": ended_ms},
        )
    # the one still enqueued is not counted
    assert system.workflow_history(ctx, since=since, step_seconds=60) == [("tests.queue", 2, 2)]
