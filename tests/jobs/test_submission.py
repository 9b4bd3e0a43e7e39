"""Submitting jobs, with a fake dispatcher, on SQLite and PostgreSQL: what is stored and enqueued,
and that a refused submission leaves nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from modelyard.context import AppContext
from modelyard.errors import InvalidInput, ModelNotFound, NotFound, PayloadTooLarge
from modelyard.jobs import service, submission
from modelyard.jobs.schemas import JobCreate, JobOptions
from tests.jobs.conftest import COLUMNS, claim_jobs, fake, features, jobs_in_db, run_job, stored, write_csv


def test_inline_rows_are_stored_and_the_job_queued_as_a_row(ctx: AppContext) -> None:
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in features(2).tolist()]
    job = submission.submit(ctx, JobCreate(model="churn", rows=rows))
    assert (job.state, job.version, job.input_kind, job.total_rows) == ("queued", 1, "inline", 2)
    assert job.options["output_format"] == "jsonl"
    assert stored(ctx) == []  # small inline rows are kept in the job's row: no file to write and sync
    assert np.load(io.BytesIO(job.input_inline or b"")).tolist() == features(2).tolist()
    assert service.job_public(job).input.uri is None
    assert fake(ctx).enqueued == []  # the row is the queue entry: a worker's dispatcher claims it
    claimed = claim_jobs(ctx, 10)
    assert claimed is not None and claimed[1] == [job.id]
    assert run_job(ctx, job.id).rows_done == 2


def test_inline_rows_over_the_row_limit_are_stored_as_a_file(ctx: AppContext) -> None:
    ctx.settings.job_inline_input_bytes = 100  # one row is 208 bytes as .npy
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(3).tolist()))
    assert job.input_inline is None
    assert stored(ctx) == [f"jobs/{job.id}/input.npy"]
    assert service.job_public(job).input.uri == f"jobs/{job.id}/input.npy"
    finished = run_job(ctx, job.id)
    assert (finished.state, finished.rows_done) == ("succeeded", 3)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (JobCreate(model="nope", rows=[[1.0] * 20]), ModelNotFound),
        (JobCreate(model="churn", rows=[[1.0] * 19]), InvalidInput),
        (JobCreate(model="churn", uri="missing.csv"), NotFound),
    ],
)
def test_bad_submissions_leave_nothing_behind(
    ctx: AppContext, data: JobCreate, error: type[Exception]
) -> None:
    with pytest.raises(error):
        submission.submit(ctx, data)
    assert stored(ctx) == [] and jobs_in_db(ctx) == 0 and fake(ctx).enqueued == []


def test_inline_rows_over_the_cap_are_413(ctx: AppContext) -> None:
    assert ctx.settings.max_inline_rows is None  # the default: as many as the body limit allows
    ctx.settings.max_inline_rows = 100
    too_many = [[0.0] * 20] * (ctx.settings.max_inline_rows + 1)
    with pytest.raises(PayloadTooLarge, match="upload a file"):
        submission.submit(ctx, JobCreate(model="churn", rows=too_many))
    assert stored(ctx) == []


def test_uri_input_over_the_cap_is_413(ctx: AppContext, tmp_path: Path) -> None:
    ctx.storage.put_file("in/big.csv", write_csv(tmp_path / "big.csv", features(50)))
    ctx.settings.max_batch_file_bytes = 100
    with pytest.raises(PayloadTooLarge):
        submission.submit(ctx, JobCreate(model="churn", uri="in/big.csv"))
    assert jobs_in_db(ctx) == 0


def test_uri_input_is_read_in_place(ctx: AppContext, tmp_path: Path) -> None:
    ctx.storage.put_file("in/x.csv", write_csv(tmp_path / "x.csv", features(150)))
    job = run_job(ctx, submission.submit(ctx, JobCreate(model="churn", uri="in/x.csv")).id)
    assert (job.state, job.rows_done, job.input_key) == ("succeeded", 150, "in/x.csv")
    service.delete(ctx, job.id)
    assert ctx.storage.exists("in/x.csv")  # a uri input is the user's, not the job's


def test_inline_rows_keep_their_float_values(ctx: AppContext) -> None:
    x = features(3)
    job = submission.submit(ctx, JobCreate(model="churn", rows=x.tolist()))
    np.testing.assert_array_equal(np.load(io.BytesIO(job.input_inline or b"")), x)
    ctx.settings.job_inline_input_bytes = 0  # and in a file
    job = submission.submit(ctx, JobCreate(model="churn", rows=x.tolist()))
    np.testing.assert_array_equal(np.load(ctx.storage.local_path(job.input_key)), x)  # type: ignore[arg-type]


def test_chunks_are_sized_by_bytes_of_model_input_unless_set(ctx: AppContext) -> None:
    ctx.settings.job_chunk_rows = 0
    ctx.settings.job_chunk_bytes = 5_000 * 20 * 4  # 5,000 rows of the model's 20 float32 features
    row = [[0.0] * 20]
    assert submission.submit(ctx, JobCreate(model="churn", rows=row)).options["chunk_rows"] == 5_000
    ctx.settings.job_chunk_bytes = 10  # bounded below: a chunk's bookkeeping must stay small beside its work
    assert submission.submit(ctx, JobCreate(model="churn", rows=row)).options["chunk_rows"] == 1_000
    own = JobCreate(model="churn", rows=row, options=JobOptions(chunk_rows=7))
    assert submission.submit(ctx, own).options["chunk_rows"] == 7
    ctx.settings.job_chunk_rows = 300
    assert submission.submit(ctx, JobCreate(model="churn", rows=row)).options["chunk_rows"] == 300
