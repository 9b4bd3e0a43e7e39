"""Archival after a pipeline's TTL: outputs move under archive/, stay listable, and come back on request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import OutputArchived
from modelyard.pipelines import events
from modelyard.pipelines.models import Event
from modelyard.pipelines.run import archive, control
from tests.imageserver import ImageServer
from tests.pipelines.conftest import apply_yaml, drain, runs, submit, write_images

SPEC = """
name: ttl
archive_after: 1h
stages:
  a: {type: python, callable: "tests.pipelines.stages:chatty"}
  b: {type: python, callable: "tests.pipelines.stages:vector", output_type: array}
"""


def age(ctx: AppContext, event_id: str, hours: float) -> None:
    with ctx.uow() as session:
        session.execute(
            update(Event).where(Event.id == event_id).values(finished_at=utcnow() - timedelta(hours=hours))
        )


def test_only_events_past_the_ttl_are_archived(ctx: AppContext) -> None:
    apply_yaml(ctx, SPEC)
    paths = write_images(ctx.settings.data_dir / "in", 2)
    old, fresh = submit(ctx, "ttl", ("old", str(paths[0])), ("fresh", str(paths[1])))
    drain(ctx)
    age(ctx, old, 2)
    assert archive.archive_due(ctx) == 1
    assert archive.archive_due(ctx) == 0  # idempotent
    r = runs(ctx, old)
    assert r["b"].archive_key == f"archive/pipelines/ttl/b/{old}.npy"
    assert r["a"].logs_key == f"archive/pipelines/ttl/a/{old}.log"
    assert not ctx.storage.exists(r["b"].output_key) and ctx.storage.exists(r["b"].archive_key)
    assert {i.key for i in ctx.storage.list("archive/pipelines/ttl")} == {
        f"archive/pipelines/ttl/a/{old}.json",
        f"archive/pipelines/ttl/a/{old}.log",
        f"archive/pipelines/ttl/b/{old}.npy",
    }
    with pytest.raises(OutputArchived):
        events.read_output(ctx, old, "b")
    assert "hello from old" in events.read_logs(ctx, old, "a")  # logs stay readable where they went
    assert runs(ctx, fresh)["b"].archive_key is None
    assert [e.name for e in events.list_events(ctx, "ttl", archived=True).items] == ["old"]
    archive.restore_event(ctx, old)
    assert events.read_output(ctx, old, "b")[1] == "application/x-npy"
    assert events.get_event(ctx, old).archived_at is None


def test_pipelines_without_ttl_are_never_archived(ctx: AppContext) -> None:
    apply_yaml(ctx, SPEC.replace("archive_after: 1h\n", ""))
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "ttl", ("e", str(path)))
    drain(ctx)
    age(ctx, eid, 10_000)
    assert archive.archive_due(ctx) == 0


def test_fetched_raw_data_is_archived_and_restored(ctx: AppContext, image_server: ImageServer) -> None:
    apply_yaml(ctx, SPEC)
    [eid] = submit(ctx, "ttl", ("web", f"{image_server.url}/img/1.png"))
    drain(ctx)
    age(ctx, eid, 2)
    archive.archive_due(ctx)
    assert events.get_event(ctx, eid).raw.location == f"archive/pipelines/raw/{eid}"  # type: ignore[union-attr]
    control.rerun(ctx, eid)  # a re-run of an archived event restores it first
    drain(ctx)
    assert events.get_event(ctx, eid).raw.location == f"pipelines/raw/{eid}"  # type: ignore[union-attr]
    assert events.read_output(ctx, eid, "b")[1] == "application/x-npy"
    assert all(r.cached for s, r in runs(ctx, eid).items() if s != "raw")
