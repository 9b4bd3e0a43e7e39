"""The ``modelyard jobs``, ``schedules`` and ``queues`` commands against a live server with its worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.cli import app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.jobs.conftest import COLUMNS, features, register_churn, write_csv

runner = CliRunner()


@pytest.fixture
def env(job_settings: Settings, model_dir: Path) -> Iterator[dict[str, str]]:
    application = create_app(job_settings.model_copy(update={"worker": True}))
    register_churn(application.state.ctx, model_dir / "logreg.onnx", COLUMNS)
    with LiveServer(application) as server:
        yield {"MODELYARD_URL": server.url, "MODELYARD_API_KEY": ADMIN_KEY}


def test_submit_follows_the_job_and_results_download(env: dict[str, str], tmp_path: Path) -> None:
    data = write_csv(tmp_path / "in.csv", features(250))
    submitted = runner.invoke(app, ["jobs", "submit", "churn", str(data)], env=env)
    assert submitted.exit_code == 0, submitted.output
    assert "succeeded  250/250 rows" in submitted.stdout
    job_id = submitted.stdout.split()[0]
    listed = runner.invoke(app, ["jobs", "list", "--state", "succeeded", "--json"], env=env)
    assert json.loads(listed.stdout)["items"][0]["id"] == job_id
    assert job_id in runner.invoke(app, ["jobs", "list"], env=env).stdout  # the whole id, to copy
    out = tmp_path / "out.parquet"
    got = runner.invoke(app, ["jobs", "results", job_id, "-o", str(out)], env=env)
    assert got.exit_code == 0, got.output
    assert pq.read_table(out).column("row").to_pylist() == list(range(250))
    assert runner.invoke(app, ["jobs", "watch", job_id], env=env).exit_code == 0
    refused = runner.invoke(app, ["jobs", "cancel", job_id], env=env)
    assert refused.exit_code == 1 and "already succeeded" in refused.output


def test_submit_without_waiting_prints_the_id_and_bad_files_exit_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "in.csv", features(5))
    queued = runner.invoke(app, ["jobs", "submit", "churn", str(data), "--no-wait"], env=env)
    assert queued.exit_code == 0 and len(queued.stdout.strip()) == 32
    empty = tmp_path / "empty.csv"
    empty.write_text("f0,f1\n")
    refused = runner.invoke(app, ["jobs", "submit", "churn", str(empty)], env=env)
    assert refused.exit_code == 1 and "no rows" in refused.output


def test_schedules_and_queues_commands(env: dict[str, str], tmp_path: Path) -> None:
    missing = runner.invoke(
        app,
        ["schedules", "create", "nightly", "--cron", "0 2 * * *", "-p", "model=churn", "-p", "uri=in/x.csv"],
        env=env,
    )
    assert missing.exit_code == 1 and "in/x.csv" in missing.output
    data = write_csv(tmp_path / "x.csv", features(3))
    assert runner.invoke(app, ["artifacts", "put", str(data), "in/x.csv"], env=env).exit_code == 0
    made = runner.invoke(
        app,
        ["schedules", "create", "nightly", "--cron", "0 2 * * *", "-p", "model=churn", "-p", "uri=in/x.csv"],
        env=env,
    )
    assert made.exit_code == 0, made.output
    assert "nightly" in runner.invoke(app, ["schedules", "list"], env=env).stdout
    assert runner.invoke(app, ["schedules", "pause", "nightly"], env=env).exit_code == 0
    assert runner.invoke(app, ["schedules", "rm", "nightly"], env=env).exit_code == 0
    shown = runner.invoke(app, ["queues"], env=env)
    assert shown.exit_code == 0 and "jobs.chunks" in shown.stdout and "dead letters: 0" in shown.stdout


def test_predict_over_many_rows_prints_the_job_it_became(
    job_settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    application = create_app(job_settings.model_copy(update={"predict_async_rows": 10}))
    register_churn(application.state.ctx, model_dir / "logreg.onnx", COLUMNS)
    rows = tmp_path / "rows.json"
    with LiveServer(application) as server:
        env = {"MODELYARD_URL": server.url, "MODELYARD_API_KEY": ADMIN_KEY}
        for n in (3, 11):
            rows.write_text(json.dumps({"rows": features(n).tolist()}))
            done = runner.invoke(app, ["predict", "churn", "--input", str(rows)], env=env)
            assert done.exit_code == 0, done.output
            if n == 3:
                assert len(json.loads(done.stdout)["outputs"]["label"]) == 3
    job = json.loads(done.stdout)
    assert job["state"] == "queued" and f"modelyard jobs watch {job['id']}" in done.stderr
