"""SIGKILL the worker running a geo run's command: a second worker recovers the run's workflow and runs
the command again (the next attempt, with a new token), which reports; the run ends succeeded, never
left running, with one prediction. A real ``modelyard worker`` process and a real API server (SQLite)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from modelyard.app import create_app
from modelyard.context import AppContext
from modelyard.durable import Worker
from modelyard.geo.models import GeoRun
from modelyard.geo.run_models import GeoPrediction
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.crash.workers import WorkerProcess, eventually
from tests.geo.conftest import s2_item, square
from tests.geo.runs_helpers import COMMAND

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[LiveServer, httpx.Client, AppContext]]:
    """The API alone (no worker in this process): the commands call it back."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'modelyard.db'}",
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with LiveServer(app) as live, httpx.Client(base_url=live.url, headers=headers) as client:
        yield live, client, app.state.ctx


def worker(ctx: AppContext, executor_id: str, callback: str) -> WorkerProcess:
    proc = WorkerProcess(executor_id, ctx.settings.data_dir, ctx.settings.resolved_database_url())
    proc.env |= {
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "MODELYARD_RUN_CALLBACK_BASE_URL": callback,
        "MODELYARD_GEO_RUN_POLL_SECONDS": "0.1",
    }
    return proc.start(ctx)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def run_row(ctx: AppContext) -> GeoRun:
    with ctx.uow() as session:
        found = session.scalars(select(GeoRun)).one()
        session.expunge(found)
        return found


def test_a_run_whose_worker_is_killed_mid_command_is_run_again_and_succeeds(
    api: tuple[LiveServer, httpx.Client, AppContext], tmp_path: Path
) -> None:
    live, client, ctx = api
    marker = tmp_path / "first-attempt.pid"
    spec = {
        "argv": [sys.executable, str(COMMAND)],
        "env": {"MODE": "crash", "MARKER": str(marker)},
        "timeout_seconds": 120,
    }
    assert client.post(
        "/api/v1/models", json={"name": "ships", "kind": "command", "command": spec}
    ).is_success
    aoi = {"name": "port", "geometry": square(5.2, 45.2, 0.5), "target_resolution": 10, "model": "ships"}
    assert client.post("/api/v1/aois", json=aoi).is_success
    assert client.post("/api/v1/scenes", json=s2_item()).status_code == 201

    first = worker(ctx, "geo-w1", live.url)
    try:
        eventually(marker.exists, 60, "the first attempt's command to start")
        assert run_row(ctx).state == "running"
        first.kill()
    finally:
        first.stop()
    # the first attempt's command died with its worker (it would otherwise sleep on, orphaned)
    eventually(lambda: gone(int(marker.read_text())), 10, "the command to die with its worker")
    second = worker(ctx, "geo-w2", live.url)
    try:
        eventually(lambda: run_row(ctx).state not in ("queued", "running"), 90, "the run to end")
    finally:
        second.stop()
    run = run_row(ctx)
    logs = client.get(f"/api/v1/runs/{run.id}/logs").json()
    assert run.state == "succeeded" and run.attempts == 2, (run.error, logs)
    assert "first report: 201" in logs["stdout"]
    with ctx.uow() as session:
        assert session.scalar(select(func.count()).select_from(GeoPrediction)) == 1
        dead = session.get(Worker, "geo-w1")
        assert dead is not None and dead.state == "recovered" and dead.recovered_by == "geo-w2"
