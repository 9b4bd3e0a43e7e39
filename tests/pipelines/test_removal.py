"""Deleting pipelines and events: their rows and every object they stored go, nothing else does; live
events are refused with a 409 (nothing touched) unless forced; a batch mid-stage leaves nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from modelyard.context import AppContext
from modelyard.errors import Conflict
from modelyard.pipelines.models import Event, EventState, PipelineVersion, RawFetch, StageRun, StageState
from modelyard.pipelines.run import removal, runner
from modelyard.pipelines.stages import Item, Outcome, StageEnv, outputs
from modelyard.storage import Storage
from tests.imageserver import ImageServer
from tests.pipelines.conftest import apply_yaml, claim, drain, event, runs, stage_loop, submit, write_images

SPEC = """
name: {name}
archive_after: 1h
stages:
  talk: {{type: python, callable: "tests.pipelines.stages:chatty"}}
  vec: {{type: python, callable: "tests.pipelines.stages:vector", output_type: array}}
"""
YAML = {"Content-Type": "application/yaml"}


def apply(api: Any, name: str) -> None:
    assert api.post("/api/v1/pipelines", content=SPEC.format(name=name), headers=YAML).status_code == 201


def post_events(api: Any, pipeline: str, *events: tuple[str, str]) -> list[str]:
    body = {"events": [{"name": n, "source": s} for n, s in events]}
    resp = api.post(f"/api/v1/pipelines/{pipeline}/events", json=body)
    assert resp.status_code == 202, resp.text
    return [e["id"] for e in resp.json()["events"]]


def stored(storage: Storage) -> set[str]:
    return {info.key for info in storage.list("")}


def rows(ctx: AppContext, pipeline_id: str) -> dict[str, int]:
    with ctx.uow() as session:
        events = select(Event.id).where(Event.pipeline_id == pipeline_id).scalar_subquery()
        return {
            "events": session.scalar(select(func.count()).where(Event.pipeline_id == pipeline_id)) or 0,
            "runs": session.scalar(select(func.count()).where(StageRun.pipeline_id == pipeline_id)) or 0,
            "fetches": session.scalar(select(func.count()).where(RawFetch.event_id.in_(events))) or 0,
            "versions": session.scalar(select(func.count()).where(PipelineVersion.pipeline_id == pipeline_id))
            or 0,
        }


def test_deleting_a_pipeline_removes_its_rows_and_objects_and_nothing_else(
    api: Any, image_server: ImageServer
) -> None:
    apply(api, "gone")
    apply(api, "kept")
    [path] = write_images(api.ctx.settings.data_dir / "in", 1)
    web, local = post_events(api, "gone", ("web", f"{image_server.url}/img/1.png"), ("local", str(path)))
    [other] = post_events(api, "kept", ("web", f"{image_server.url}/img/2.png"))
    drain(api.ctx)
    assert api.post(f"/api/v1/events/{local}/archive").status_code == 200  # archived objects go too
    gone_id = runs(api.ctx, web)["raw"].pipeline_id
    before = stored(api.ctx.storage)
    kept = {k for k in before if "/kept/" in k or other in k}
    assert {f"pipelines/raw/{web}", f"archive/pipelines/gone/vec/{local}.npy"} <= before
    assert len(kept) == 4  # the kept event's raw data, talk's output and logs, vec's output

    resp = api.delete("/api/v1/pipelines/gone")
    assert resp.status_code == 204 and resp.content == b""
    assert api.get("/api/v1/pipelines/gone").json()["code"] == "pipeline-not-found"
    assert api.get(f"/api/v1/events/{web}").status_code == 404
    assert rows(api.ctx, gone_id) == {"events": 0, "runs": 0, "fetches": 0, "versions": 0}
    assert stored(api.ctx.storage) == kept  # every object of "gone" went, every one of "kept" stayed
    assert path.exists()  # a file an event only read is the client's
    assert api.get(f"/api/v1/events/{other}/stages/vec/output").status_code == 200
    gauges = [
        line
        for line in api.get("/metrics").text.splitlines()
        if line.startswith(("modelyard_pipeline_stage_runs{", "modelyard_pipeline_events{"))
    ]
    assert gauges and not [line for line in gauges if 'pipeline="gone"' in line]  # read from the rows
    assert 'modelyard_pipeline_events{pipeline="kept",state="complete"} 1.0' in gauges
    again = api.post("/api/v1/pipelines", content=SPEC.format(name="gone"), headers=YAML)
    assert again.status_code == 201 and again.json()["version"] == 1  # the name is free again
    assert api.delete("/api/v1/pipelines/nope").json()["code"] == "pipeline-not-found"


def test_a_pipeline_with_live_events_is_refused_unchanged_unless_forced(api: Any) -> None:
    apply(api, "busy")
    paths = write_images(api.ctx.settings.data_dir / "in", 3)
    first = post_events(api, "busy", ("done", str(paths[0])))
    drain(api.ctx)
    live = post_events(api, "busy", ("a", str(paths[1])), ("b", str(paths[2])))
    pipeline_id = runs(api.ctx, first[0])["raw"].pipeline_id
    objects, counts = stored(api.ctx.storage), rows(api.ctx, pipeline_id)

    refused = api.delete("/api/v1/pipelines/busy")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert (problem["code"], problem["live_events"]) == ("conflict", 2)
    assert "2 events are pending or running" in problem["detail"] and "force=true" in problem["detail"]
    assert (stored(api.ctx.storage), rows(api.ctx, pipeline_id)) == (objects, counts)  # nothing touched
    assert [event(api.ctx, e).state for e in live] == [EventState.PENDING] * 2
    assert api.get("/api/v1/pipelines/busy").status_code == 200

    assert api.delete("/api/v1/pipelines/busy", params={"force": True}).status_code == 204
    assert rows(api.ctx, pipeline_id) == {"events": 0, "runs": 0, "fetches": 0, "versions": 0}
    assert not any("/busy/" in k for k in stored(api.ctx.storage))
    assert drain(api.ctx) == 0  # nothing of it is left to run


def test_deleting_an_event_removes_its_rows_and_objects_only(api: Any, image_server: ImageServer) -> None:
    apply(api, "p")
    web, other = post_events(
        api, "p", ("web", f"{image_server.url}/img/1.png"), ("other", f"{image_server.url}/img/2.png")
    )
    refused = api.delete(f"/api/v1/events/{web}")
    assert refused.status_code == 409 and refused.json()["live_events"] == 1
    assert api.get(f"/api/v1/events/{web}").json()["state"] == "pending"  # nothing lost
    drain(api.ctx)
    assert api.post(f"/api/v1/events/{web}/archive").status_code == 200
    before = stored(api.ctx.storage)
    mine = {k for k in before if web in k}
    assert len(mine) == 4 and all(k.startswith("archive/") for k in mine)  # raw, talk + its logs, vec
    pipeline_id = runs(api.ctx, web)["raw"].pipeline_id

    assert api.delete(f"/api/v1/events/{web}").status_code == 204
    assert api.get(f"/api/v1/events/{web}").json()["code"] == "event-not-found"
    assert stored(api.ctx.storage) == before - mine
    assert rows(api.ctx, pipeline_id) == {"events": 1, "runs": 3, "fetches": 1, "versions": 1}
    assert api.get(f"/api/v1/events/{other}/stages/talk/logs").text.startswith("hello from other")
    assert api.get("/api/v1/pipelines/p/events/web").status_code == 404
    assert api.delete(f"/api/v1/events/{web}").json()["code"] == "event-not-found"
    # the name can be submitted again, and runs from scratch
    [again] = post_events(api, "p", ("web", f"{image_server.url}/img/1.png"))
    drain(api.ctx)
    assert again != web and api.get(f"/api/v1/events/{again}").json()["state"] == "complete"


def test_deleting_needs_the_write_scope(api: Any) -> None:
    apply(api, "p")
    [path] = write_images(api.ctx.settings.data_dir / "in", 1)
    [eid] = post_events(api, "p", ("e", str(path)))
    drain(api.ctx)
    reader = api.post("/api/v1/keys", json={"name": "r", "scopes": ["read"]}).json()["key"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert api.delete(f"/api/v1/events/{eid}", headers=as_reader).status_code == 403
    assert api.delete("/api/v1/pipelines/p", params={"force": True}, headers=as_reader).status_code == 403
    assert api.get(f"/api/v1/events/{eid}").json()["state"] == "complete"


@pytest.mark.parametrize("what", ["pipeline", "event"])
def test_a_forced_delete_while_a_batch_is_mid_stage_leaves_nothing_behind(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    apply_yaml(ctx, SPEC.format(name="p"))
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "p", ("e", str(path)))
    real = runner.run_stage

    def delete_meanwhile(spec: Any, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """The stage has run; its outputs are not written yet when the client deletes."""
        done = real(spec, items, env)
        with pytest.raises(Conflict):  # its runs are running: refused without force
            removal.delete_event(ctx, eid) if what == "event" else removal.delete_pipeline(ctx, "p")
        if what == "event":
            removal.delete_event(ctx, eid, force=True)
        else:
            removal.delete_pipeline(ctx, "p", force=True)
        return done

    monkeypatch.setattr(runner, "run_stage", delete_meanwhile)
    assert drain(ctx) == 3  # raw, then both stages: one deletes, the other finds nothing to run
    assert not [k for k in stored(ctx.storage) if k.startswith(("pipelines/", "archive/"))]
    with ctx.uow() as session:
        assert session.scalar(select(func.count()).select_from(StageRun)) == 0
    assert path.exists()


def test_a_delete_racing_archival_leaves_no_archived_object_behind(ctx: AppContext) -> None:
    apply_yaml(ctx, SPEC.format(name="p"))
    paths = write_images(ctx.settings.data_dir / "in", 2)
    doomed, kept = submit(ctx, "p", ("doomed", str(paths[0])), ("kept", str(paths[1])))
    drain(ctx)
    talk = runs(ctx, doomed)["talk"]
    assert talk.output_key and talk.logs_key
    before = stored(ctx.storage)
    # archival has moved the event's objects but not yet recorded it when the delete reads the rows
    moved = [talk.output_key, talk.logs_key, runs(ctx, doomed)["vec"].output_key]
    for key in moved:
        ctx.storage.move(key, outputs.archive_key(key))
    removal.delete_event(ctx, doomed)
    assert stored(ctx.storage) == {k for k in before if k not in moved}  # the kept event's are untouched
    assert not any(doomed in key for key in stored(ctx.storage))
    assert all(ctx.storage.exists(r.output_key) for r in runs(ctx, kept).values() if r.stage != "raw")


def test_a_batch_that_claimed_a_deleted_events_run_still_runs_the_others(ctx: AppContext) -> None:

    apply_yaml(ctx, SPEC.format(name="p"))
    paths = write_images(ctx.settings.data_dir / "in", 2)
    doomed, kept = submit(ctx, "p", ("doomed", str(paths[0])), ("kept", str(paths[1])))
    pipeline_id = runs(ctx, doomed)["raw"].pipeline_id
    claimed = claim(ctx, pipeline_id, "raw", 10)
    assert claimed is not None
    removal.delete_event(ctx, doomed, force=True)  # its raw run is claimed by a batch not yet run
    runner.run_batch(ctx, claimed[0])
    drain(ctx)
    assert event(ctx, kept).state == EventState.COMPLETE
    assert runs(ctx, doomed) == {}
    assert all(r.state == StageState.DONE for r in runs(ctx, kept).values())


def test_events_submitted_while_their_pipeline_is_deleted_are_a_404_and_not_stored(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.errors import PipelineNotFound
    from modelyard.pipelines import submission
    from modelyard.pipelines.schemas import EventCreate

    apply_yaml(ctx, SPEC.format(name="p"))
    real = submission._insert_events

    def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not deleted:
            deleted.append(removal.delete_pipeline(ctx, "p"))
        return real(*args, **kwargs)

    deleted: list[int] = []

    monkeypatch.setattr(submission, "_insert_events", deleted_meanwhile)
    with pytest.raises(PipelineNotFound):
        submission.submit_events(ctx, "p", [EventCreate(name="e", source="in/a.png")])
    with ctx.uow() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_the_dispatcher_skips_ready_runs_of_a_pipeline_deleted_meanwhile(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.pipelines import dispatch

    apply_yaml(ctx, SPEC.format(name="p"))
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "p", ("e", str(path)))
    stale = dispatch.ready_groups(ctx)  # read just before the pipeline goes
    assert stale == [(runs(ctx, eid)["raw"].pipeline_id, "raw", 1)]
    removal.delete_pipeline(ctx, "p", force=True)
    monkeypatch.setattr(dispatch, "ready_groups", lambda _ctx: stale)
    assert stage_loop(ctx, lambda _batch: None).dispatch_once() == 0
