"""Small jobs in bulk (one transaction each side of the model runs), in this thread, on SQLite and
PostgreSQL: the same rows, outputs and events as the one-job way, and a repeat changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.jobs import runner, service, small, submission
from modelyard.jobs.models import Job, JobChunk
from modelyard.jobs.schemas import JobCreate, JobOptions
from tests.jobs.conftest import features, write_csv


def test_small_jobs_run_in_bulk_with_the_outputs_of_the_one_job_way(
    ctx: AppContext, model_dir: Path, monkeypatch: Any
) -> None:
    xs = [features(n, seed=n) for n in (1, 3, 7)]
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=x.tolist())).id for x in xs]
    big = submission.submit(ctx, JobCreate(model="churn", rows=features(250).tolist())).id  # 3 chunks
    path = write_csv(ctx.settings.data_dir.parent / "f.csv", features(5))
    upload = submission.submit_file(
        ctx,
        model="churn",
        version="latest",
        path=path,
        filename="f.csv",
        declared_format=None,
        options=JobOptions(),
    ).id
    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(ctx.bus, "publish", lambda topic, data: seen.append((topic, data)))

    outcomes, rest = small.run_small(ctx, [*ids, big, upload], "test")

    assert rest == [big, upload]  # several chunks, or a file: the one-job way
    assert {i: (o["status"], o["rows"]) for i, o in outcomes.items()} == {
        ids[0]: ("done", 1),
        ids[1]: ("done", 3),
        ids[2]: ("done", 7),
    }
    sess = ort.InferenceSession(str(model_dir / "logreg.onnx"))
    with ctx.uow() as session:
        for job_id, x in zip(ids, xs, strict=True):
            job = session.get_one(Job, job_id)
            chunk = session.get_one(JobChunk, (job_id, 0))
            assert (job.state, job.rows_done, job.chunk_count, job.chunks_done) == ("succeeded", len(x), 1, 1)
            assert (chunk.state, chunk.attempts, chunk.completions, chunk.executor_id) == (
                "done",
                1,
                1,
                "test",
            )
            _, tables = service.results(ctx, job_id)
            table = pa.concat_tables(list(tables))
            assert table.column("row").to_pylist() == list(range(len(x)))
            expected = sess.run(None, {"X": x})[1]
            np.testing.assert_allclose(
                np.stack(table.column("probabilities").to_numpy(zero_copy_only=False)), expected, rtol=1e-6
            )
    assert [t for t, d in seen if d["job_id"] == ids[0]] == ["jobs.started", "jobs.finished"]

    # a repeat (a recovered step) finds them planned: nothing runs twice, nothing is counted twice
    again, rest = small.run_small(ctx, ids, "test")
    assert again == {} and rest == ids
    assert [runner.plan_job(ctx, i)["status"] for i in ids] == ["stop"] * 3
    with ctx.uow() as session:
        assert [session.get_one(JobChunk, (i, 0)).completions for i in ids] == [1, 1, 1]


def test_a_small_job_whose_model_fails_is_retried_alone(ctx: AppContext, monkeypatch: Any) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=features(2).tolist())).id for _ in range(3)]
    real = ctx.inference.predict_sync
    calls: list[int] = []

    def second_fails(ref: Any, arrays: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise TimeoutError("model server hiccup")
        return real(ref, arrays)

    monkeypatch.setattr(ctx.inference, "predict_sync", second_fails)
    outcomes, rest = small.run_small(ctx, ids, "test")
    assert rest == [] and [outcomes[i]["status"] for i in ids] == ["done", "retry", "done"]
    # the workflow tries it again the one-job way: planned already, its chunk runs again
    assert runner.plan_job(ctx, ids[1])["status"] == "ok"
    assert runner.run_chunk(ctx, ids[1], 0, "test")["status"] == "done"
    with ctx.uow() as session:
        assert [session.get_one(Job, i).state for i in ids] == ["succeeded"] * 3
        assert session.get_one(JobChunk, (ids[1], 0)).attempts == 2


def test_small_jobs_log_their_start_and_end_with_one_insert_per_transaction(
    ctx: AppContext, monkeypatch: Any
) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=features(n).tolist())).id for n in (1, 2, 3)]
    inserts: list[int] = []
    real = log.append_many
    monkeypatch.setattr(
        log, "append_many", lambda session, rows: (inserts.append(len(rows)), real(session, rows))
    )
    small.run_small(ctx, ids, "test")
    with ctx.uow() as session:
        logged = [(e.subject, e.topic) for e in log.read(session, prefixes=("jobs.started", "jobs.finished"))]
    assert inserts == [3, 3]  # the starts, then the ends: one statement each
    assert logged == [*((i, "jobs.started") for i in ids), *((i, "jobs.finished") for i in ids)]
