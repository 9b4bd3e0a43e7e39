"""Jobs fixtures: a context with a fake dispatcher (no DBOS), the logreg model registered as ``churn``,
and small input files written on the spot."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.durable import WorkState
from modelyard.jobs import dispatch, runner, service
from modelyard.jobs.models import Job
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.settings import Settings

COLUMNS = [f"f{i}" for i in range(20)]


class FakeDispatcher:
    """Records what would be enqueued, cancelled, forgotten or scheduled; runs nothing."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str, str, tuple[Any, ...]]] = []
        self.cancelled: list[str] = []
        self.forgotten: list[str] = []
        self.schedules: dict[str, dict[str, Any]] = {}

    def enqueue(self, workflow: str, queue: str, workflow_id: str, *args: Any) -> None:
        if workflow_id not in self.ids():
            self.enqueued.append((workflow, queue, workflow_id, args))

    def ids(self) -> list[str]:
        return [e[2] for e in self.enqueued]

    def cancel(self, workflow_id_prefix: str) -> int:
        self.cancelled.append(workflow_id_prefix)
        return 0

    def forget(self, workflow_id_prefix: str) -> None:
        self.forgotten.append(workflow_id_prefix)

    def statuses(self, workflow_ids: list[str]) -> dict[str, WorkState]:
        return {w: WorkState.WAITING for w in workflow_ids if w in self.ids()}

    def create_schedule(
        self, name: str, workflow: str, cron: str, context: dict[str, Any], timezone: str | None
    ) -> None:
        self.schedules[name] = {
            "schedule_name": name,
            "workflow_name": workflow,
            "schedule": cron,
            "context": context,
            "cron_timezone": timezone,
            "status": "ACTIVE",
            "last_fired_at": None,
        }

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        return [s for s in self.schedules.values() if s["workflow_name"] == workflow]

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        return self.schedules.get(name)

    def delete_schedule(self, name: str) -> None:
        self.schedules.pop(name, None)

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        self.schedules[name]["status"] = "PAUSED" if paused else "ACTIVE"

    def close(self) -> None:
        pass


def register_churn(
    ctx: AppContext, onnx_file: Path, columns: list[str] | None = COLUMNS, name: str = "churn"
) -> None:
    """Register ``onnx_file`` as version 1 of ``name`` (with column names unless None)."""
    with ctx.uow() as session:
        registry.create_model(
            session=session, data=ModelCreate(name=name, metadata={"columns": columns} if columns else {})
        )
        registry.add_version(
            session=session,
            storage=ctx.storage,
            name=name,
            path=onnx_file,
            sha256=hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
        )


@pytest.fixture
def job_settings(settings: Settings) -> Settings:
    """Small chunks and quick retries, so a few hundred rows make several chunks."""
    return settings.model_copy(update={"job_chunk_rows": 100, "job_retry_seconds": 0.01})


@pytest.fixture
def ctx(job_settings: Settings, model_dir: Path) -> Iterator[AppContext]:
    """A context with ``churn`` registered and a fake dispatcher."""
    context = build_context(job_settings)
    context.dispatcher.set(FakeDispatcher())
    register_churn(context, model_dir / "logreg.onnx")
    yield context
    context.close()


def claim_jobs(ctx: AppContext, size: int) -> tuple[str, list[str]] | None:
    """Claim up to ``size`` queued jobs as one batch: (batch id, job ids), or None."""
    found = dispatch.JOBS.claim_batch(ctx, size)
    return (found.claim_id, [k[0] for k in found.keys]) if found is not None else None


def claim_chunks(ctx: AppContext, limit: int) -> list[tuple[str, str, int]]:
    """Claim up to ``limit`` waiting chunks, one claim each: (claim id, job id, index)."""
    return [(c.claim_id, *c.keys[0]) for c in dispatch.CHUNKS.claim_rows(ctx, limit)]


def fake(ctx: AppContext) -> FakeDispatcher:
    found = ctx.dispatcher.get()
    assert isinstance(found, FakeDispatcher)
    return found


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 20)).astype(np.float32)


def write_csv(path: Path, x: np.ndarray, header: bool = True) -> Path:
    lines = [",".join(COLUMNS)] if header else []
    lines += [",".join(f"{v:.6f}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_job(ctx: AppContext, job_id: str) -> Job:
    """Do what the workflows do, in this thread: plan, then every chunk once."""
    plan = runner.plan_job(ctx, job_id)
    for index in range(int(plan.get("chunks", 0))):
        runner.run_chunk(ctx, job_id, index, "test")
    with ctx.uow() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def stored(ctx: AppContext) -> list[str]:
    """Keys under jobs/ in the artifact store."""
    return [o.key for o in ctx.storage.list("jobs")]


def jobs_in_db(ctx: AppContext) -> int:
    """How many jobs the database holds."""
    with ctx.uow() as session:
        return service.list_jobs(session=session)[1]
