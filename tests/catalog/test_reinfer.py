"""Re-inference in place (``catalog.reinfer``, ``catalog.inplace``): the values equal what the pipeline path
stores, unchanged content and model come from the content-hash cache, a record that fails goes through an
event (visible in the pipeline) and fails the re-inference by name, a cancel lands even mid-step, a claim
of a dead worker is taken over, and the heartbeat's wake runs it all on the re-inference thread."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from modelyard.catalog import binding, reinfer, workflows
from modelyard.catalog.models import RecordEvent, Reinference
from modelyard.db import utcnow
from modelyard.pipelines.models import Event
from tests.catalog.test_versions import (
    COLOURS,
    LOOKS,
    C,
    add_version,
    bound_collection,
    ingest,
    settle,
    wait_until,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def switch(api: Any) -> dict[str, Any]:
    started = api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"})
    assert started.status_code == 202, started.text
    job: dict[str, Any] = started.json()
    return job


def job_of(api: Any, job: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = api.get(f"{C}/reinferences/{job['id']}").json()
    return got


def vectors(api: Any, version: str) -> dict[str, list[float]]:
    """Every record's embedder values at ``version``, exactly as stored."""
    out = {}
    for rid in COLOURS:
        items = api.get(f"{C}/records/{rid}/inferences").json()["items"]
        found = [i["values"] for i in items if i["producer"] == "embedder" and i["version"] == version]
        if found:
            out[rid] = found[0]
    return out


def events_of(api: Any, job: dict[str, Any]) -> int:
    with api.ctx.uow() as session:
        count = select(func.count()).where(RecordEvent.reinference_id == job["id"])
        return int(session.scalar(count) or 0)


def stage_runs(api: Any, outcome: str) -> float:
    labels = {"pipeline": "looks", "stage": "feat", "outcome": outcome}
    found = api.ctx.metrics.registry.get_sample_value("modelyard_pipeline_stage_run_seconds_count", labels)
    return float(found or 0.0)


def test_values_stored_in_place_equal_those_of_the_pipeline_path(api: Any) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = switch(api)
    assert job_of(api, job)["done"] == 0  # the request only records it: workers compute
    settle(api)
    assert job_of(api, job)["state"] == "succeeded"
    assert events_of(api, job) == 0  # no pipeline event: the stage ran in place
    in_place = vectors(api, "2")
    assert set(in_place) == set(COLOURS)
    for rid in COLOURS:  # the same records through the pipeline's events (the stage runs version 2 now)
        binding.infer_now(api.ctx, "works", rid)
    settle(api)
    assert vectors(api, "2") == in_place  # exactly the same floats
    assert api.get(f"{C}/records/red").json()["inferred"]["embedder"] == in_place["red"]


@SQLITE_ONLY
def test_unchanged_content_and_model_come_from_the_content_hash_cache(api: Any) -> None:
    bound_collection(api, names={"red": COLOURS["red"], "blue": COLOURS["blue"]})
    add_version(api, seed=1)
    ingest(api, {"copy": COLOURS["red"]})  # the same image as red, run through the pipeline with version 2
    settle(api)
    [copied] = [
        i for i in api.get(f"{C}/records/copy/inferences").json()["items"] if i["producer"] == "embedder"
    ]
    assert copied["version"] == "2"
    before = stage_runs(api, "cached"), stage_runs(api, "done")
    job = switch(api)
    settle(api)
    assert job_of(api, job)["state"] == "succeeded"
    assert (stage_runs(api, "cached"), stage_runs(api, "done")) == (before[0] + 1, before[1] + 1)  # red, blue
    items = api.get(f"{C}/records/red/inferences").json()["items"]
    [red] = [i["values"] for i in items if i["producer"] == "embedder" and i["version"] == "2"]
    assert red == copied["values"]


@SQLITE_ONLY
def test_a_record_that_fails_goes_through_an_event_and_fails_the_re_inference_by_name(api: Any) -> None:
    bound_collection(api)
    Path(api.ctx.settings.data_dir, "img", "navy.png").write_bytes(b"not an image any more")
    add_version(api, seed=1)
    job = switch(api)
    settle(api)
    done = job_of(api, job)
    assert done["state"] == "failed" and done["failed"] == 1 and done["done"] == len(COLOURS) - 1
    assert "record 'navy'" in done["error"] and "1 stays current" in done["error"]
    assert events_of(api, job) == 1  # only the failing record became an event
    with api.ctx.uow() as session:
        event_id = session.scalar(select(RecordEvent.event_id).where(RecordEvent.reinference_id == job["id"]))
    assert event_id is not None and event_id in done["error"]
    shown = api.get(f"/api/v1/events/{event_id}").json()
    assert shown["state"] == "failed" and "not image" in shown["error"]["detail"]  # the pipeline shows it
    assert api.get(f"{C}/versions").json()["items"][0]["current"] == "1"


@SQLITE_ONLY
def test_a_cancel_during_a_step_stores_nothing_of_it(api: Any) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = switch(api)
    me = reinfer.owner(api.ctx)
    with api.ctx.uow() as session:
        row = session.get(Reinference, job["id"])
        assert row is not None
        session.expunge(row)
    assert reinfer._claim(api.ctx, job["id"], me)  # a step has begun on this worker...
    cancelled = api.post(f"{C}/reinferences/{job['id']}/cancel")  # ...and the cancel lands meanwhile
    assert cancelled.status_code == 200
    with api.ctx.uow() as session:
        pks = list(session.scalars(select(RecordEvent.record_pk)))[:3]
    assert not reinfer._store(api.ctx, row, {pk: [0.5] * 16 for pk in pks}, me)
    settle(api)
    assert job_of(api, job)["state"] == "cancelled" and job_of(api, job)["done"] == 0
    assert vectors(api, "2") == {}


@SQLITE_ONLY
def test_a_dead_workers_claim_is_taken_over_once_older_than_the_heartbeat_timeout(api: Any) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = switch(api)

    def claimed(at: Any) -> None:
        with api.ctx.uow() as session:
            session.execute(
                update(Reinference)
                .where(Reinference.id == job["id"])
                .values(claimed_by="dead", claimed_at=at)
            )

    claimed(utcnow())  # a worker took it and died mid-step
    assert reinfer.advance(api.ctx) == 0  # held: this worker does not compute the same records
    assert job_of(api, job)["done"] == 0
    claimed(utcnow() - timedelta(seconds=api.ctx.settings.heartbeat_timeout_seconds + 1))
    settle(api)
    done = job_of(api, job)
    assert done["state"] == "succeeded" and done["done"] == len(COLOURS)
    with api.ctx.uow() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == len(COLOURS)  # the first ones


@SQLITE_ONLY
def test_the_heartbeat_wakes_the_re_inference_thread_which_switches(api: Any) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = switch(api)
    try:
        workflows.advance_reinferences(api.ctx)  # what every worker heartbeat calls
        wait_until(lambda: job_of(api, job)["state"] != "running")
    finally:
        api.ctx.reinfer.close()
    assert job_of(api, job)["state"] == "succeeded"
    assert api.get(f"{C}/versions").json()["items"][0]["current"] == "2"


@SQLITE_ONLY
def test_a_version_registered_before_the_workers_compute_fails_the_re_inference_and_stores_nothing(
    api: Any,
) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = switch(api)
    add_version(api, seed=2)  # the stage now runs version 3 (latest)
    settle(api)
    done = job_of(api, job)
    assert done["state"] == "failed" and "now runs embedder 3" in done["error"]
    assert vectors(api, "2") == {} and vectors(api, "3") == {}
    assert api.get(f"{C}/versions").json()["items"][0]["current"] == "1"


@SQLITE_ONLY
def test_one_call_runs_the_steps_one_after_another_storing_each(api: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(reinfer, "STEP_BATCHES", 1)  # steps of one batch of 2 records: 4 steps
    bound_collection(api, spec=LOOKS + "defaults: {batch_size: 2}\n")
    Path(api.ctx.settings.data_dir, "img", "green.png").write_bytes(b"not an image any more")
    add_version(api, seed=1)
    job = switch(api)
    stored: list[int] = []
    store = reinfer._store

    def counted(ctx: Any, row: Any, values: dict[int, Any], me: str) -> bool:
        stored.append(len(values))
        return store(ctx, row, values, me)

    monkeypatch.setattr(reinfer, "_store", counted)
    assert reinfer.advance_one(api.ctx, job["id"])
    assert stored == [2, 2, 1, 2]  # red crimson, blue navy, olive (green fails), grey white
    assert events_of(api, job) == 1 and job_of(api, job)["done"] == len(COLOURS) - 1
    settle(api)
    done = job_of(api, job)
    assert done["state"] == "failed" and "record 'green'" in done["error"]
