"""The jobs API: submission and its refusals, control, results, SSE; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from modelyard.app import create_app
from modelyard.db import utcnow
from modelyard.jobs.models import Job, JobState
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, push_model
from tests.hostile import non_utf8_multipart
from tests.jobs.conftest import COLUMNS, features, write_csv


@pytest.fixture
def api(client: TestClient, model_dir: Path) -> TestClient:
    """The app without a worker: jobs stay queued."""
    push_model(client, model_dir / "logreg.onnx", "churn", {"columns": COLUMNS})
    return client


@pytest.fixture
def worker_api(job_settings: Settings, model_dir: Path) -> Iterator[TestClient]:
    """The app with its in-process worker: jobs run."""
    app = create_app(job_settings.model_copy(update={"worker": True}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        push_model(c, model_dir / "logreg.onnx", "churn", {"columns": COLUMNS})
        yield c


def csv_bytes(x: np.ndarray, tmp_path: Path) -> bytes:
    return write_csv(tmp_path / "in.csv", x).read_bytes()


def wait_final(c: TestClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = c.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def kept_files(settings: Settings) -> list[Path]:
    roots = [settings.data_dir / "artifacts" / "jobs", settings.data_dir / "tmp"]
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_submit_answers_202_with_location_and_a_queued_job(api: TestClient) -> None:
    resp = api.post("/api/v1/jobs", json={"model": "churn", "rows": features(3).tolist()})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["state"], job["version"], job["input"]["kind"]) == ("queued", 1, "inline")
    assert api.get(resp.headers["location"]).json()["id"] == job["id"]


def test_inline_rows_past_the_old_cap_are_one_job(api: TestClient) -> None:
    x = features(20_000)
    resp = api.post("/api/v1/jobs", content=orjson.dumps({"model": "churn", "rows": x.tolist()}))
    assert resp.status_code == 202, resp.text
    assert resp.json()["progress"]["total_rows"] == 20_000
    assert api.post("/api/v1/jobs", content=b"{not json").status_code == 400
    assert api.post("/api/v1/jobs", content=b"[1, 2]").json()["code"] == "bad-request"


def test_upload_multipart_or_raw_body(api: TestClient, tmp_path: Path) -> None:
    data = csv_bytes(features(10), tmp_path)
    multipart = api.post(
        "/api/v1/jobs/upload", files={"file": ("in.csv", data)}, data={"model": "churn", "on_error": "skip"}
    )
    assert multipart.status_code == 202, multipart.text
    assert multipart.json()["options"]["on_error"] == "skip"
    raw = api.post(
        "/api/v1/jobs/upload?model=churn&filename=in.csv&output_format=parquet",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert raw.status_code == 202, raw.text
    assert (raw.json()["input"]["format"], raw.json()["options"]["output_format"]) == ("csv", "parquet")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("query", "name", "body", "status", "code", "fragment"),
    [
        ("model=nope", "x.csv", b"1,2\n", 404, "model-not-found", "'nope'"),
        ("model=churn", "x.csv", b"", 400, "bad-request", "empty"),
        ("model=churn", "x.csv", b"f0,f1\n1,2\n", 400, "invalid-input", "lacks column"),
        ("model=churn", "x.xlsx", b"1,2\n", 400, "bad-request", "cannot tell the format"),
        ("model=churn", "x.npy", _npy(np.array([["a"] * 20])), 400, "invalid-input", "dtype <U1"),
        ("model=churn", "x.npy", b"not numpy", 400, "bad-request", "not a readable .npy"),
        ("", "x.csv", b"1,2\n", 400, "bad-request", "say which model"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_kept(
    api: TestClient,
    settings: Settings,
    query: str,
    name: str,
    body: bytes,
    status: int,
    code: str,
    fragment: str,
) -> None:
    resp = api.post(f"/api/v1/jobs/upload?{query}", files={"file": (name, body)})
    assert resp.status_code == status, resp.text
    problem = resp.json()
    assert problem["code"] == code and fragment in problem["detail"]
    assert resp.headers["content-type"] == "application/problem+json"
    assert kept_files(settings) == []
    assert api.get("/api/v1/jobs").json()["total"] == 0


def test_a_file_over_the_cap_is_413_and_nothing_is_kept(
    job_settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    small = job_settings.model_copy(update={"max_batch_file_bytes": 1000})
    with TestClient(create_app(small), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        push_model(c, model_dir / "logreg.onnx", "churn", {"columns": COLUMNS})
        resp = c.post(
            "/api/v1/jobs/upload?model=churn", files={"file": ("in.csv", csv_bytes(features(50), tmp_path))}
        )
        assert resp.status_code == 413, resp.text
        assert kept_files(small) == []
        assert c.get("/api/v1/jobs").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "churn", "rows": [[1.0] * 20], "uri": "x.csv"}, 422, "body"),
        ({"model": "churn"}, 422, "body"),
        ({"model": "churn", "rows": [[1.0, "x"]]}, 422, "body.rows"),  # "row 0 holds 'x'..."
        ({"model": "churn", "rows": 5}, 400, "rows"),
        (
            {"model": "churn", "rows": [[1.0] * 20], "options": {"on_error": "ignore"}},
            422,
            "body.options.on_error",
        ),
        ({"model": "churn", "uri": "missing.csv"}, 404, None),
    ],
)
def test_bad_json_submissions_are_4xx(
    api: TestClient, body: dict[str, Any], status: int, field: str | None
) -> None:
    resp = api.post("/api/v1/jobs", json=body)
    assert resp.status_code == status, resp.text
    if field:
        assert resp.json()["field"] == field


def test_jobs_need_an_api_key(api: TestClient) -> None:
    assert api.get("/api/v1/jobs", headers={"Authorization": ""}).status_code == 401


def test_list_cancel_retry_delete(api: TestClient) -> None:
    ids = [
        api.post("/api/v1/jobs", json={"model": "churn", "rows": [[0.0] * 20]}).json()["id"] for _ in range(3)
    ]
    page = api.get("/api/v1/jobs?limit=2&offset=1").json()
    assert (page["total"], len(page["items"])) == (3, 2)
    assert api.post(f"/api/v1/jobs/{ids[0]}/cancel").json()["state"] == "cancelled"
    assert [j["id"] for j in api.get("/api/v1/jobs?state=cancelled").json()["items"]] == [ids[0]]
    assert api.get("/api/v1/jobs?state=bogus").status_code == 400
    assert api.get(f"/api/v1/jobs/{ids[0]}/results").status_code == 409
    retried = api.post(f"/api/v1/jobs/{ids[0]}/retry")
    assert (retried.status_code, retried.json()["state"]) == (202, "queued")
    assert api.post(f"/api/v1/jobs/{ids[1]}/retry").status_code == 409
    assert api.delete(f"/api/v1/jobs/{ids[0]}").status_code == 204
    assert api.get(f"/api/v1/jobs/{ids[0]}").json()["code"] == "job-not-found"


def test_results_in_every_format_match_the_rows(worker_api: TestClient, tmp_path: Path) -> None:
    x = features(250)
    resp = worker_api.post(
        "/api/v1/jobs/upload?model=churn", files={"file": ("in.csv", csv_bytes(x, tmp_path))}
    )
    job = wait_final(worker_api, resp.json()["id"])
    assert (job["state"], job["progress"]["rows_done"], job["progress"]["fraction"]) == (
        "succeeded",
        250,
        1.0,
    )
    as_csv = worker_api.get(f"/api/v1/jobs/{job['id']}/results")  # the input's format by default
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(as_csv.content))
    assert table.column("row").to_pylist() == list(range(250))
    assert "probabilities_1" in table.column_names
    parquet = pq.read_table(
        io.BytesIO(worker_api.get(f"/api/v1/jobs/{job['id']}/results?format=parquet").content)
    )
    assert parquet.num_rows == 250
    lines = worker_api.get(f"/api/v1/jobs/{job['id']}/results?format=jsonl").content.splitlines()
    assert orjson.loads(lines[-1])["row"] == 249
    assert worker_api.get(f"/api/v1/jobs/{job['id']}/results?format=xlsx").status_code == 422


def test_malformed_rows_fail_the_job_with_row_numbers_or_are_skipped(
    worker_api: TestClient, tmp_path: Path
) -> None:
    data = csv_bytes(features(150), tmp_path).replace(b"\n", b"\nbad,row\n", 1)
    failed = worker_api.post("/api/v1/jobs/upload?model=churn", files={"file": ("in.csv", data)})
    job = wait_final(worker_api, failed.json()["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "malformed-rows"
    assert "row 0: expected 20 fields, got 2" in job["error"]["detail"]
    bad = worker_api.get(f"/api/v1/jobs/{job['id']}/chunks?state=failed").json()["items"]
    assert bad[0]["row_errors"] == [{"row": 0, "error": "row 0: expected 20 fields, got 2"}]
    skipped = worker_api.post(
        "/api/v1/jobs/upload?model=churn&on_error=skip", files={"file": ("in.csv", data)}
    ).json()
    job = wait_final(worker_api, skipped["id"])
    assert (job["state"], job["progress"]["rows_done"], job["progress"]["rows_failed"]) == (
        "succeeded",
        150,
        1,
    )
    rows = pq.read_table(
        io.BytesIO(worker_api.get(f"/api/v1/jobs/{job['id']}/results?format=parquet").content)
    ).column("row")
    assert rows.to_pylist() == list(range(1, 151))


def test_event_stream_reports_progress_until_finished(worker_api: TestClient) -> None:
    job = worker_api.post("/api/v1/jobs", json={"model": "churn", "rows": features(250).tolist()}).json()
    names, last = [], None
    with worker_api.stream("GET", f"/api/v1/jobs/{job['id']}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                names.append(line.split(":", 1)[1].strip())
            if line.startswith("data:"):
                last = orjson.loads(line[5:])
    assert names[-1] == "finished" and names.count("finished") == 1
    assert last is not None and last["state"] == "succeeded" and last["progress"]["rows_done"] == 250
    assert worker_api.get("/api/v1/jobs/nope/events").status_code == 404


def test_event_stream_resumes_after_last_event_id_with_the_events_missed(worker_api: TestClient) -> None:
    job = worker_api.post("/api/v1/jobs", json={"model": "churn", "rows": features(250).tolist()}).json()
    assert wait_final(worker_api, job["id"])["state"] == "succeeded"
    logged = worker_api.get("/api/v1/log", params={"topics": "jobs.", "subject": job["id"]}).json()["items"]
    assert logged[0]["topic"] == "jobs.queued" and logged[-1]["topic"] == "jobs.finished"
    seen: list[tuple[int, str]] = []
    headers = {"Last-Event-ID": str(logged[0]["id"])}
    with worker_api.stream("GET", f"/api/v1/jobs/{job['id']}/events", headers=headers) as resp:
        for line in resp.iter_lines():
            if line.startswith("id:"):
                seen.append((int(line[3:]), ""))
            elif line.startswith("event:"):
                seen[-1] = (seen[-1][0], line.split(":", 1)[1].strip())
    assert seen == [(e["id"], e["topic"].removeprefix("jobs.")) for e in logged[1:]]


def test_queue_page_dead_letters_and_metrics(worker_api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = worker_api.app.state.ctx  # type: ignore[attr-defined]
    real = ctx.inference.predict_sync

    def broken(ref: Any, arrays: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(ctx.inference, "predict_sync", broken)
    job = worker_api.post("/api/v1/jobs", json={"model": "churn", "rows": features(5).tolist()}).json()
    assert wait_final(worker_api, job["id"])["state"] == "failed"
    letters = worker_api.get("/api/v1/queues/dead-letters").json()
    assert letters["total"] == 1
    letter = letters["items"][0]
    assert (letter["job_id"], letter["index"], letter["attempts"]) == (job["id"], 0, 3)
    assert "OSError: disk on fire" in letter["traceback"]
    page = worker_api.get("/api/v1/queues").json()
    assert page["dead_letters"] == 1
    assert {q["name"] for q in page["queues"]} >= {"jobs", "jobs.chunks"}
    assert [w["state"] for w in page["workers"]] == ["alive"]
    monkeypatch.setattr(ctx.inference, "predict_sync", real)
    assert worker_api.post(letter["retry"]).status_code == 202
    assert wait_final(worker_api, job["id"])["state"] == "succeeded"
    metrics = worker_api.get("/metrics").text
    assert 'modelyard_queue_completed_last_hour{queue="jobs"}' in metrics
    assert "modelyard_worker_up{" in metrics
    assert 'modelyard_jobs{state="succeeded"} 1.0' in metrics
    assert "modelyard_dead_letters 0.0" in metrics


def test_queue_history_counts_finished_work_per_minute_from_the_stored_rows(api: TestClient) -> None:
    """Jobs finished 1, 30 and 90 minutes ago by any process (written straight to the table here): the
    hour's history puts the first two in their minutes and leaves the third out; waiting jobs count
    nowhere."""
    ctx = api.app.state.ctx  # type: ignore[attr-defined]
    ids = [
        api.post("/api/v1/jobs", json={"model": "churn", "rows": features(1).tolist()}).json()["id"]
        for _ in range(4)
    ]
    now = utcnow()
    with ctx.uow() as session:
        for job_id, ago, state in zip(
            ids, (1, 30, 90), (JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED), strict=False
        ):
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(state=state, finished_at=now - timedelta(minutes=ago))
            )
    found = api.get("/api/v1/queues/history").json()
    assert found["step_seconds"] == 60
    jobs = next(q["finished"] for q in found["queues"] if q["name"] == "jobs")
    assert len(jobs) == 60 and sum(jobs) == 2
    # the last step is the minute under way: one minute ago is one or two steps back, 30 minutes ago 30-31
    assert [i for i, n in enumerate(jobs) if n] in ([28, 58], [29, 58], [28, 59], [29, 59])
    assert {"jobs.chunks", "pipelines"} <= {q["name"] for q in found["queues"]}
    assert api.get("/api/v1/queues/history", params={"minutes": 0}).status_code == 422


def test_schedules_api(api: TestClient, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "x.csv", features(3))
    assert api.put("/api/v1/artifacts/in/x.csv", content=csv.read_bytes()).status_code == 201
    body = {"name": "nightly", "cron": "0 2 * * *", "params": {"model": "churn", "uri": "in/x.csv"}}
    created = api.post("/api/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["next_fire_at"].endswith("02:00:00Z")
    assert api.post("/api/v1/schedules", json=body).status_code == 409
    assert (
        api.post("/api/v1/schedules", json=body | {"name": "b", "cron": "every day"}).json()["field"]
        == "cron"
    )
    assert (
        api.post("/api/v1/schedules", json=body | {"name": "b", "job_type": "nope"}).json()["field"]
        == "job_type"
    )
    bad_params = api.post("/api/v1/schedules", json=body | {"name": "b", "params": {"model": "churn"}})
    assert (bad_params.status_code, bad_params.json()["errors"][0]["field"]) == (422, "params.uri")
    assert (
        api.post("/api/v1/schedules", json=body | {"name": "b", "timezone": "Mars/Base"}).status_code == 400
    )
    assert [s["name"] for s in api.get("/api/v1/schedules").json()["items"]] == ["nightly"]
    assert api.post("/api/v1/schedules/nightly/pause").json()["paused"] is True
    assert api.post("/api/v1/schedules/nightly/resume").json()["paused"] is False
    assert [s["name"] for s in api.get("/api/v1/schedules").json()["items"]] == ["nightly"]
    assert {t["name"] for t in api.get("/api/v1/schedules/job-types").json()} >= {
        "batch_predict",
        "purge_jobs",
    }
    assert api.delete("/api/v1/schedules/nightly").status_code == 204
    assert api.get("/api/v1/schedules/nightly").status_code == 404


def test_schedule_is_refused_when_a_job_with_its_params_would_be(api: TestClient, tmp_path: Path) -> None:
    body = {"name": "nightly", "cron": "0 2 * * *", "params": {"model": "churn", "uri": "in/none.csv"}}
    missing_file = api.post("/api/v1/schedules", json=body)
    job = api.post("/api/v1/jobs", json=body["params"])
    assert (missing_file.status_code, missing_file.json()["code"]) == (job.status_code, job.json()["code"])
    assert missing_file.status_code == 404
    missing_model = api.post("/api/v1/schedules", json=body | {"params": {"model": "nope", "uri": "x.csv"}})
    assert (missing_model.status_code, missing_model.json()["code"]) == (404, "model-not-found")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    api.put("/api/v1/artifacts/in/wrong.csv", content=wrong.read_bytes())
    misfit = api.post("/api/v1/schedules", json=body | {"params": {"model": "churn", "uri": "in/wrong.csv"}})
    assert (
        misfit.status_code
        == api.post("/api/v1/jobs", json={"model": "churn", "uri": "in/wrong.csv"}).status_code
    )
    assert misfit.status_code in (400, 422)
    assert api.get("/api/v1/schedules").json()["items"] == []


def test_openapi_documents_every_jobs_route(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        if path.startswith(("/api/v1/jobs", "/api/v1/queues", "/api/v1/schedules")):
            for op in methods.values():
                assert op.get("description"), f"{path} has no docstring"
    job_create = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert job_create["title"] == "JobCreate"
    assert job_create["properties"]["model"]["examples"] == ["churn"]
    assert "on_error" in job_create["properties"]["options"]["properties"]
    assert "multipart/form-data" in spec["paths"]["/api/v1/jobs/upload"]["post"]["requestBody"]["content"]


def test_upload_with_a_multipart_field_name_that_is_not_utf8_is_400(api: TestClient) -> None:
    body, headers = non_utf8_multipart()
    resp = api.post("/api/v1/jobs/upload?model=churn", content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert "not UTF-8" in resp.json()["detail"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_inline_rows_with_non_finite_numbers_are_400_as_on_predict(api: TestClient, number: bytes) -> None:
    body = b'{"model": "churn", "rows": [[1.0, 2.0, ' + number + b", 4.0]]}"
    resp = api.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "not valid JSON" in resp.json()["detail"]
    predicted = api.post(
        "/api/v1/models/churn/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert predicted.status_code == 400
    assert api.get("/api/v1/jobs").json()["total"] == 0


def test_inline_rows_with_non_finite_numbers_as_strings_are_refused(api: TestClient) -> None:
    resp = api.post("/api/v1/jobs", json={"model": "churn", "rows": [[1.0, 2.0, "nan", 4.0]]})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith("body.rows")


def test_rows_full_of_bad_values_are_one_422_naming_the_first(api: TestClient) -> None:
    resp = api.post("/api/v1/jobs", json={"model": "churn", "rows": [[1.0] * 20] * 3 + [["x"] * 20] * 5000})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "body.rows"
    assert "row 3 holds 'x'" in resp.json()["detail"]
    assert len(resp.json()["errors"]) == 1


def test_a_body_with_many_problems_lists_the_first_hundred_and_counts_them_all(api: TestClient) -> None:
    events = [{"name": i, "source": i} for i in range(300)]  # names and sources must be strings
    resp = api.post("/api/v1/pipelines/p/events", json={"events": events})
    assert resp.status_code == 422, resp.text
    assert len(resp.json()["errors"]) == 100
    assert "problems, the first 100 listed" in resp.json()["detail"]
