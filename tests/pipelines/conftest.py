"""Pipelines fixtures: a context (no DBOS: batches run in this process through the real dispatcher
code), helpers to apply specs and submit events, and test images in the data dir."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.durable import ClaimLoop
from modelyard.pipelines import service, submission
from modelyard.pipelines.dispatch import STAGE_RUNS
from modelyard.pipelines.models import Event, StageRun
from modelyard.pipelines.schemas import EventCreate
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.settings import Settings
from tests.inferrers.images import encode, noise


@pytest.fixture
def pipeline_settings(private_settings: Settings) -> Settings:
    """Private URLs allowed (the test server is local), claims stale at once."""
    return private_settings.model_copy(update={"pipeline_claim_timeout_seconds": 0.0})


@pytest.fixture
def ctx(pipeline_settings: Settings) -> Iterator[AppContext]:
    context = build_context(pipeline_settings)
    yield context
    context.close()


def stage_loop(ctx: AppContext, start: Any) -> ClaimLoop:
    """A worker's loop over the stage runs queue, starting batches with ``start(batch_id)``."""
    return ClaimLoop(ctx, STAGE_RUNS, start, parallel_starts=False)


def claim(ctx: AppContext, pipeline_id: str, stage: str, size: int) -> tuple[str, int] | None:
    """Claim up to ``size`` ready runs of one stage as a batch: (batch id, runs), or None."""
    where = (StageRun.pipeline_id == pipeline_id, StageRun.stage == stage)
    found = STAGE_RUNS.claim_batch(ctx, size, where)
    return (found.claim_id, found.count) if found is not None else None


def drain(ctx: AppContext, *, rounds: int = 1000) -> int:
    """Run every ready batch in this thread until nothing is ready; returns batches run."""
    from modelyard.pipelines.run.runner import run_batch

    def start(batch_id: str) -> None:
        run_batch(ctx, batch_id)

    dispatcher = stage_loop(ctx, start)
    total = 0
    for _ in range(rounds):
        started = dispatcher.dispatch_once()
        if not started:
            return total
        total += started
    raise AssertionError("the pipeline did not settle")


def apply_yaml(ctx: AppContext, text: str) -> Any:
    return service.apply(ctx, yaml.safe_load(text))


def submit(ctx: AppContext, pipeline: str, *items: tuple[str, str], **kwargs: Any) -> list[str]:
    got = submission.submit_events(ctx, pipeline, [EventCreate(name=n, source=s, **kwargs) for n, s in items])
    return [e.id for e in got]


def runs(ctx: AppContext, event_id: str) -> dict[str, StageRun]:
    from sqlalchemy import select

    with ctx.uow() as session:
        return {r.stage: r for r in session.scalars(select(StageRun).where(StageRun.event_id == event_id))}


def event(ctx: AppContext, event_id: str) -> Event:
    with ctx.uow() as session:
        found = session.get(Event, event_id)
        assert found is not None
        return found


def write_images(folder: Path, count: int, size: tuple[int, int] = (32, 24)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        path.write_bytes(encode(noise(i, size)))
        paths.append(path)
    return paths


def register_model(ctx: AppContext, path: Path, name: str) -> None:
    with ctx.uow() as session:
        registry.create_model(session=session, data=ModelCreate(name=name))
        registry.add_version(
            session=session,
            storage=ctx.storage,
            name=name,
            path=path,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )


@pytest.fixture
def api(pipeline_settings: Settings) -> Iterator[Any]:
    """A TestClient of an app that may fetch from local URLs; batches run with ``drain(api.ctx)``."""
    from fastapi.testclient import TestClient

    from modelyard.app import create_app
    from tests.conftest import ADMIN_KEY

    app = create_app(pipeline_settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.ctx = app.state.ctx  # type: ignore[attr-defined]
        yield client
