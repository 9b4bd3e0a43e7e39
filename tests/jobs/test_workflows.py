"""The durable workflows with DBOS running in this process, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dbos import DBOS

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.durable import Durable
from modelyard.jobs import dispatch, service, submission
from modelyard.jobs.models import Job, JobChunk
from modelyard.jobs.schemas import JobCreate
from modelyard.logs import setup_logging
from modelyard.ops import queues
from modelyard.schedules import service as schedules
from modelyard.schedules.schemas import ScheduleCreate
from modelyard.settings import Settings
from tests.jobs.conftest import features, register_churn

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy (a deadline, not a sleep, decides)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def live(job_settings: Settings, model_dir: Path) -> Iterator[AppContext]:
    """A context with ``churn`` registered and a durable worker launched in this process."""
    ctx = build_context(job_settings.model_copy(update={"worker": True}))
    register_churn(ctx, model_dir / "logreg.onnx")
    durable = Durable(ctx, executor_id="test-worker")
    durable.launch()
    yield ctx
    ctx.close()


def _succeeded(workflow_id: str) -> Any:
    status = DBOS.get_workflow_status(workflow_id)
    return status if status is not None and status.status == "SUCCESS" else None


def final(ctx: AppContext, job_id: str) -> Job:
    def probe() -> Job | None:
        with ctx.uow() as session:
            job = session.get_one(Job, job_id)
            return job if job.state in ("succeeded", "failed", "cancelled") else None

    return eventually(probe)


def test_job_chunks_are_claimed_and_run_one_workflow_each(live: AppContext) -> None:
    job = submission.submit(live, JobCreate(model="churn", rows=features(250).tolist()))
    done = final(live, job.id)
    assert (done.state, done.rows_done, done.chunk_count) == ("succeeded", 250, 3)
    with live.uow() as session:
        chunks = service.list_chunks(session=session, job_id=job.id)
        claims = [c.batch_id for c in session.query(JobChunk).where(JobChunk.job_id == job.id)]
    assert [(c.state, c.attempts) for c in chunks] == [("done", 1)] * 3
    assert len(set(claims)) == 3 and None not in claims
    # the last chunk settles the job inside its step; its workflow (id: the claim) records SUCCESS just after
    for claim in claims:
        status = eventually(lambda claim=claim: _succeeded(claim))
        assert (status.name, status.executor_id) == (service.CHUNK_WORKFLOW, "test-worker")
    _, tables = service.results(live, job.id)
    assert [r for t in tables for r in t.column("row").to_pylist()] == list(range(250))


def test_a_flaky_chunk_is_retried_with_backoff_until_it_passes(
    live: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = live.inference.predict_sync
    calls: list[int] = []

    def flaky(ref: Any, arrays: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise TimeoutError("model server hiccup")
        return real(ref, arrays)

    monkeypatch.setattr(live.inference, "predict_sync", flaky)
    job = submission.submit(live, JobCreate(model="churn", rows=features(10).tolist()))
    assert final(live, job.id).state == "succeeded"
    with live.uow() as session:
        chunk = session.get_one(JobChunk, (job.id, 0))
    assert (chunk.state, chunk.attempts, chunk.error) == ("done", 3, None)


def test_a_chunk_failing_every_attempt_is_a_dead_letter_that_can_be_resubmitted(
    live: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = live.inference.predict_sync

    def broken(ref: Any, arrays: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(live.inference, "predict_sync", broken)
    job = submission.submit(live, JobCreate(model="churn", rows=features(10).tolist()))
    failed = final(live, job.id)
    assert (failed.state, failed.error_code) == ("failed", "retries-exhausted")
    with live.uow() as session:
        letters, total = service.list_dead_letters(session=session)
    assert total == 1 and letters[0].attempts == live.settings.job_max_attempts
    assert "OSError: disk on fire" in (letters[0].traceback or "")
    # the queue page counts the job failed
    page = queues.snapshot(live)
    jobs_queue = next(q for q in page.queues if q.name == dispatch.JOB_QUEUE)
    assert (jobs_queue.failed_last_hour, jobs_queue.length, jobs_queue.running) == (1, 0, 0)
    assert page.dead_letters == 1
    monkeypatch.setattr(live.inference, "predict_sync", real)
    service.retry(live, job.id, [0])
    assert final(live, job.id).state == "succeeded"


def test_a_dead_chunk_is_one_console_line_and_its_traceback_goes_to_the_log_file(
    live: AppContext, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    setup_logging("INFO", tmp_path / "logs")
    try:

        def broken(ref: Any, arrays: Any) -> Any:
            raise OSError("disk on fire")

        monkeypatch.setattr(live.inference, "predict_sync", broken)
        job = submission.submit(live, JobCreate(model="churn", rows=features(10).tolist()))
        assert final(live, job.id).state == "failed"
        logged = tmp_path / "logs" / "modelyard.log"
        dead = eventually(
            lambda: [
                line
                for line in map(json.loads, logged.read_text().splitlines())
                if line["msg"] == "job chunk dead" and line.get("job_id") == job.id
            ]
        )
    finally:
        for name in ("modelyard", "dbos"):
            for handler in list(logging.getLogger(name).handlers):
                logging.getLogger(name).removeHandler(handler)
                handler.close()
    console = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["detail"] for line in console if line["msg"] == "job chunk dead"] == [
        "OSError: disk on fire"
    ]
    assert not [line for line in console if "Traceback" in json.dumps(line)]
    assert "Traceback" in dead[0]["exc"] and "OSError: disk on fire" in dead[0]["exc"]


def test_cancel_stops_waiting_chunks(live: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    real = live.inference.predict_sync

    def slow(ref: Any, arrays: Any) -> Any:
        time.sleep(0.3)
        return real(ref, arrays)

    monkeypatch.setattr(live.inference, "predict_sync", slow)
    job = submission.submit(live, JobCreate(model="churn", rows=features(2000).tolist()))
    eventually(lambda: _chunks_done(live, job.id) >= 1)
    service.cancel(live, job.id)
    time.sleep(1.0)  # long enough for waiting chunks to have run, had they not been cancelled
    with live.uow() as session:
        states = [c.state for c in service.list_chunks(session=session, job_id=job.id)]
        job_state = session.get_one(Job, job.id).state
    assert job_state == "cancelled"
    assert "cancelled" in states and states.count("done") < len(states)


def _chunks_done(ctx: AppContext, job_id: str) -> int:
    with ctx.uow() as session:
        return session.get_one(Job, job_id).chunks_done


def test_a_schedule_fires_once_per_slot(live: AppContext, tmp_path: Path) -> None:
    ctx = live
    from tests.jobs.conftest import write_csv

    ctx.storage.put_file("in/nightly.csv", write_csv(tmp_path / "n.csv", features(5)))
    params = {"model": "churn", "uri": "in/nightly.csv"}
    schedules.create(ctx, ScheduleCreate(name="every-second", cron="* * * * * *", params=params))

    def fired() -> list[Job]:
        with ctx.uow() as session:
            jobs = service.list_jobs(session=session)[0]
        return jobs if len(jobs) >= 3 else []

    jobs = eventually(fired)
    schedules.set_paused(ctx, "every-second", True)
    slots = [j.options["schedule"] for j in jobs]
    assert len(slots) == len(set(slots))
    assert all(s.startswith("every-second@") for s in slots)
    assert schedules.get(ctx, "every-second").paused
    schedules.delete(ctx, "every-second")
    assert ctx.dispatcher.get().get_schedule("every-second") is None
