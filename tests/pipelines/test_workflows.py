"""Pipelines on real DBOS: a launched worker dispatches batches as durable workflows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from modelyard.context import AppContext
from modelyard.durable import Durable, WorkState
from modelyard.pipelines.models import EventState
from tests.pipelines.conftest import apply_yaml, event, runs, submit, write_images

CHAIN = """
name: chain
stages:
  a: {type: python, callable: "tests.pipelines.stages:size", output_type: json}
  b: {type: python, callable: "tests.pipelines.stages:double", inputs: [a], output_type: json}
  c: {type: python, callable: "tests.pipelines.stages:double", inputs: [b], output_type: json}
"""


@pytest.fixture
def worker(ctx: AppContext) -> Iterator[Durable]:
    durable = Durable(ctx, executor_id="pipelines-test")
    durable.launch()
    yield durable
    durable.shutdown()


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_events_flow_through_durable_batches(ctx: AppContext, worker: Durable) -> None:
    apply_yaml(ctx, CHAIN)
    paths = write_images(ctx.settings.data_dir / "in", 20)
    ids = submit(ctx, "chain", *[(p.stem, str(p)) for p in paths])
    wait_for(lambda: all(event(ctx, e).state == EventState.COMPLETE for e in ids))
    batches = {r.batch_id for e in ids for r in runs(ctx, e).values()}
    ids = [b for b in batches if b]
    wait_for(
        lambda: set(ctx.dispatcher.get().statuses(ids).values()) == {WorkState.SUCCEEDED}
    )  # the step returns after settling
    statuses = ctx.dispatcher.get().statuses(ids)
    assert len(statuses) == len(batches) < 4 * len(ids)  # batches, not one workflow per stage run
    assert ctx.claim_loops["pipelines"].started >= 4
