"""What a worker does with a job, step by step, in this thread (no DBOS), on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.jobs import runner, service, sizing, submission
from modelyard.jobs.models import Job, JobChunk, JobState
from modelyard.jobs.schemas import JobCreate, JobOptions
from tests.jobs.conftest import features, register_churn, run_job, write_csv


def submit_csv(ctx: AppContext, tmp_path: Path, x: np.ndarray, on_error: str = "fail") -> Job:
    path = write_csv(tmp_path / "in.csv", x)
    return submission.submit_file(
        ctx,
        model="churn",
        version="latest",
        path=path,
        filename="in.csv",
        declared_format=None,
        options=JobOptions(on_error=on_error),  # type: ignore[arg-type]
    )


def chunks(ctx: AppContext, job_id: str) -> list[JobChunk]:
    with ctx.uow() as session:
        return service.list_chunks(session=session, job_id=job_id)


def all_results(ctx: AppContext, job_id: str) -> pa.Table:
    _, tables = service.results(ctx, job_id)
    return pa.concat_tables(list(tables))


def test_job_runs_in_chunks_and_matches_raw_onnxruntime(
    ctx: AppContext, tmp_path: Path, model_dir: Path
) -> None:
    x = features(250)
    job = run_job(ctx, submit_csv(ctx, tmp_path, x).id)
    assert (job.state, job.total_rows, job.chunk_count, job.rows_done) == ("succeeded", 250, 3, 250)
    out = all_results(ctx, job.id)
    assert out.column("row").to_pylist() == list(range(250))
    sess = ort.InferenceSession(str(model_dir / "logreg.onnx"), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"X": np.round(x, 6)})
    assert out.column("label").to_pylist() == label.tolist()
    np.testing.assert_allclose(np.array(out.column("probabilities").to_pylist()), proba, atol=1e-6)


def test_a_job_logs_queued_started_progress_at_most_so_often_and_one_finished(
    ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log, "PROGRESS_SECONDS", 3600.0)  # every chunk after the first falls in the window
    job = run_job(ctx, submit_csv(ctx, tmp_path, features(250)).id)  # 3 chunks
    with ctx.uow() as session:
        events = log.read(session, subject=job.id)
    assert [e.topic for e in events] == ["jobs.queued", "jobs.started", "jobs.progress", "jobs.finished"]
    assert (events[2].data["chunks_done"], events[3].data["rows_done"]) == (1, 250)
    assert events[3].data["state"] == "succeeded"


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def test_a_repeated_chunk_is_written_once_and_counted_once(
    ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.settings.job_inline_output_bytes = 0  # outputs in files, written under their keys
    job = submit_csv(ctx, tmp_path, features(150))
    runner.plan_job(ctx, job.id)
    assert runner.plan_job(ctx, job.id)["chunks"] == 2  # planning again changes nothing
    real_complete = runner._complete

    def killed(*args: object) -> None:
        raise Killed

    # chunk 0: the worker dies after writing its output, before recording it; the chunk runs again
    monkeypatch.setattr(runner, "_complete", killed)
    with pytest.raises(Killed):
        runner.run_chunk(ctx, job.id, 0)
    monkeypatch.setattr(runner, "_complete", real_complete)
    runner.run_chunk(ctx, job.id, 0)
    # chunk 1: a worker thought dead finishes after its recovered twin did; only one counts
    late: list[tuple[object, ...]] = []
    monkeypatch.setattr(runner, "_complete", lambda *args: late.append(args))
    runner.run_chunk(ctx, job.id, 1)
    monkeypatch.setattr(runner, "_complete", real_complete)
    runner.run_chunk(ctx, job.id, 1)
    real_complete(*late[0])  # type: ignore[arg-type]
    assert runner.run_chunk(ctx, job.id, 1)["status"] == "stop"  # done: another run does nothing
    with ctx.uow() as session:
        done = session.get_one(Job, job.id)
        first, second = (session.get_one(JobChunk, (job.id, i)) for i in (0, 1))
    assert (done.state, done.rows_done, done.chunks_done) == ("succeeded", 150, 2)
    assert (first.attempts, first.completions) == (2, 1)
    assert (second.attempts, second.completions) == (2, 2)
    assert all_results(ctx, job.id).column("row").to_pylist() == list(range(150))
    assert len(list(ctx.storage.list(f"jobs/{job.id}/out"))) == 2


def test_malformed_rows_fail_the_job_with_their_row_numbers(ctx: AppContext, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", features(250))
    lines = path.read_text().splitlines()
    lines[1 + 120] = "oops," + lines[1 + 120].split(",", 1)[1]
    lines[1 + 130] = "1,2,3"
    path.write_text("\n".join(lines) + "\n")
    job = submission.submit_file(
        ctx,
        model="churn",
        version=1,
        path=path,
        filename="in.csv",
        declared_format=None,
        options=JobOptions(),
    )
    job = run_job(ctx, job.id)
    assert job.state == "failed"
    assert job.error_code == "malformed-rows"
    assert "row 120: column 'f0' is not a number: 'oops'" in (job.error or "")
    assert "row 130: expected 20 fields, got 3" in (job.error or "")
    states = [c.state for c in chunks(ctx, job.id)]
    assert states == ["done", "failed", "cancelled"]  # the job stopped at the bad chunk
    with pytest.raises(Exception, match="results are there once it has succeeded"):
        service.results(ctx, job.id)


def test_skip_leaves_malformed_rows_out_and_lists_them(ctx: AppContext, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", features(250))
    lines = path.read_text().splitlines()
    lines[1 + 7] = ",".join(["x"] * 20)
    path.write_text("\n".join(lines) + "\n")
    job = submission.submit_file(
        ctx,
        model="churn",
        version="latest",
        path=path,
        filename="in.csv",
        declared_format=None,
        options=JobOptions(on_error="skip"),
    )
    job = run_job(ctx, job.id)
    assert (job.state, job.rows_done, job.rows_failed) == ("succeeded", 249, 1)
    assert chunks(ctx, job.id)[0].row_errors == [
        {"row": 7, "error": "row 7: column 'f0' is not a number: 'x'"}
    ]
    assert 7 not in all_results(ctx, job.id).column("row").to_pylist()


def test_transient_failure_asks_for_a_retry_then_dead_letter(
    ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.settings.job_inline_output_bytes = 0  # the output goes to the (failing) store
    job = submit_csv(ctx, tmp_path, features(50))
    runner.plan_job(ctx, job.id)

    def broken(*args: object) -> None:
        raise ConnectionResetError("storage went away")

    monkeypatch.setattr(ctx.storage, "writing", broken)
    outcome = runner.run_chunk(ctx, job.id, 0)
    assert outcome["status"] == "retry"
    assert outcome["max_attempts"] == ctx.settings.job_max_attempts
    chunk = chunks(ctx, job.id)[0]
    assert (chunk.state, chunk.attempts) == ("queued", 1)
    assert "ConnectionResetError" in (chunk.traceback or "")
    runner.chunk_dead(ctx, job.id, 0, outcome["error"], outcome["traceback"])
    with ctx.uow() as session:
        letters, total = service.list_dead_letters(session=session)
        failed = session.get_one(Job, job.id)
    assert total == 1 and letters[0].error == "ConnectionResetError: storage went away"
    assert "storage went away" in (letters[0].traceback or "")
    assert failed.state == "failed"


def test_rows_the_model_refuses_at_run_time_fail_the_chunk_without_a_retry(
    ctx: AppContext, model_dir: Path
) -> None:
    register_churn(ctx, model_dir / "reshape.onnx", None, name="shaper")
    good = run_job(ctx, submission.submit(ctx, JobCreate(model="shaper", rows=[[1, 1], [1, 1]])).id)
    assert good.state == "succeeded"
    bad = submission.submit(ctx, JobCreate(model="shaper", rows=[[7, 1], [1, 1]]))
    runner.plan_job(ctx, bad.id)
    outcome = runner.run_chunk(ctx, bad.id, 0)
    assert outcome["status"] == "failed" and "Reshape" in outcome["error"]
    chunk = chunks(ctx, bad.id)[0]
    assert (chunk.state, chunk.attempts, chunk.error_code) == ("failed", 1, "invalid-input")
    with ctx.uow() as session:
        assert session.get_one(Job, bad.id).state == "failed"


def test_model_runtime_out_of_memory_is_retried_then_a_dead_letter(ctx: AppContext, model_dir: Path) -> None:
    register_churn(ctx, model_dir / "allocate.onnx", None, name="hungry")
    job = submission.submit(ctx, JobCreate(model="hungry", rows=[[2**20, 2**20], [1, 1]]))
    plan = runner.plan_job(ctx, job.id)
    outcomes = [runner.run_chunk(ctx, job.id, 0) for _ in range(plan["max_attempts"])]
    assert [o["status"] for o in outcomes] == ["retry"] * plan["max_attempts"]
    assert "allocate memory" in outcomes[-1]["error"]
    chunk = chunks(ctx, job.id)[0]
    assert (chunk.state, chunk.attempts, chunk.error_code) == ("queued", 3, "model-run-failed")
    runner.chunk_dead(ctx, job.id, 0, outcomes[-1]["error"], outcomes[-1]["traceback"])
    with ctx.uow() as session:
        letters, total = service.list_dead_letters(session=session)
        assert session.get_one(Job, job.id).state == "failed"
    assert total == 1 and "ModelRunFailed" in letters[0].error


def test_a_model_slow_per_row_gets_short_chunks_one_per_slot_at_least(ctx: AppContext) -> None:
    ctx.settings.job_chunk_rows, ctx.settings.worker_concurrency = 0, 2  # the server sizes chunks
    sizing._costs(ctx)[("churn", 1)] = 1e-3  # measured: 1 ms a row, so 2 s is 2,000 rows
    slow = submission.submit(ctx, JobCreate(model="churn", rows=features(5_000).tolist()))
    assert runner.plan_job(ctx, slow.id)["chunks"] == 3
    assert [(c.row_start, c.row_end) for c in chunks(ctx, slow.id)] == [(0, 2000), (2000, 4000), (4000, 5000)]
    sizing._costs(ctx)[("churn", 1)] = 1e-7  # a fast model keeps one big chunk
    fast = submission.submit(ctx, JobCreate(model="churn", rows=features(5_000).tolist()))
    assert runner.plan_job(ctx, fast.id)["chunks"] == 1
    assert run_job(ctx, slow.id).rows_done == 5_000


def test_a_running_chunk_reports_its_rows_done_and_counts_them_once(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizing._costs(ctx)[("churn", 1)] = 5e-4  # 3,000 rows are 1.5 s of work: three sub-batches
    monkeypatch.setattr(sizing, "PROGRESS_SECONDS", 0.0)  # report after every sub-batch
    seen: list[tuple[str, int]] = []
    publish = ctx.bus.publish
    monkeypatch.setattr(ctx.bus, "publish", lambda t, d: (seen.append((t, d["rows_done"])), publish(t, d)))
    x = features(3_000)
    job = submission.submit(
        ctx, JobCreate(model="churn", rows=x.tolist(), options=JobOptions(chunk_rows=3_000))
    )
    job = run_job(ctx, job.id)
    assert [rows for topic, rows in seen if topic == "jobs.progress"] == [1_000, 2_000]
    assert (job.state, job.rows_done, chunks(ctx, job.id)[0].rows) == ("succeeded", 3_000, 3_000)
    assert all_results(ctx, job.id).column("row").to_pylist() == list(range(3_000))


def test_rows_reported_by_a_chunk_that_fails_are_taken_back(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.settings.job_inline_output_bytes = 0  # the output goes to the (failing) store
    sizing._costs(ctx)[("churn", 1)] = 5e-4
    monkeypatch.setattr(sizing, "PROGRESS_SECONDS", 0.0)
    job = submission.submit(
        ctx, JobCreate(model="churn", rows=features(3_000).tolist(), options=JobOptions(chunk_rows=3_000))
    )
    runner.plan_job(ctx, job.id)

    def broken(*args: object) -> None:
        raise ConnectionResetError("storage went away")

    monkeypatch.setattr(ctx.storage, "writing", broken)
    assert runner.run_chunk(ctx, job.id, 0)["status"] == "retry"
    with ctx.uow() as session:
        assert session.get_one(Job, job.id).rows_done == 0
    assert chunks(ctx, job.id)[0].rows == 0


def test_model_gone_before_planning_fails_the_job_cleanly(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(3).tolist()))
    with ctx.uow() as session:
        from modelyard.registry import service as registry

        registry.delete_model(session=session, storage=ctx.storage, name="churn")
    ctx.inference.invalidate("churn")
    assert runner.plan_job(ctx, job.id) == {"status": "stop"}
    with ctx.uow() as session:
        failed = session.get_one(Job, job.id)
    assert (failed.state, failed.error_code) == ("failed", "model-not-found")


def test_cancelled_job_chunks_do_not_run(ctx: AppContext, tmp_path: Path) -> None:
    job = submit_csv(ctx, tmp_path, features(250))
    runner.plan_job(ctx, job.id)
    runner.run_chunk(ctx, job.id, 0)
    service.cancel(ctx, job.id)
    assert runner.run_chunk(ctx, job.id, 1) == {"status": "stop"}
    assert [c.state for c in chunks(ctx, job.id)] == ["done", "cancelled", "cancelled"]
    with ctx.uow() as session:
        assert session.get_one(Job, job.id).state == JobState.CANCELLED


def test_output_of_a_job_deleted_mid_chunk_is_removed(
    ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.settings.job_inline_output_bytes = 0  # the output goes to a file
    job = submit_csv(ctx, tmp_path, features(50))
    runner.plan_job(ctx, job.id)
    real_writing = ctx.storage.writing

    @contextlib.contextmanager
    def write_then_delete(key: str) -> Iterator[Path]:
        with real_writing(key) as path:
            yield path
        service.delete(ctx, job.id)

    monkeypatch.setattr(ctx.storage, "writing", write_then_delete)
    runner.run_chunk(ctx, job.id, 0)
    assert list(ctx.storage.list(f"jobs/{job.id}")) == []


def test_small_outputs_are_kept_in_the_chunk_row_not_in_files(ctx: AppContext, tmp_path: Path) -> None:
    job = run_job(ctx, submit_csv(ctx, tmp_path, features(120)).id)
    assert [c.output_key for c in chunks(ctx, job.id)] == [None, None]
    assert [o.key for o in ctx.storage.list(f"jobs/{job.id}/out")] == []
    assert all_results(ctx, job.id).column("row").to_pylist() == list(range(120))


def test_results_file_is_valid_parquet_per_chunk(ctx: AppContext, tmp_path: Path) -> None:
    ctx.settings.job_inline_output_bytes = 0  # every output in a file
    job = run_job(ctx, submit_csv(ctx, tmp_path, features(120)).id)
    keys = [c.output_key for c in chunks(ctx, job.id)]
    assert keys == [f"jobs/{job.id}/out/000000.parquet", f"jobs/{job.id}/out/000001.parquet"]
    assert pq.read_table(io.BytesIO(ctx.storage.get_bytes(str(keys[1])))).num_rows == 20
