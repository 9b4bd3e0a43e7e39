"""Pipelines: apply specs (versioned; every problem listed at once), look them up, and the parsed spec of
any version (cached: versions are immutable). No FastAPI, no DBOS: the API, the CLI, workflows and tests
all call these."""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard import extras
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable.loop import wake as wake_loop
from modelyard.errors import (
    ModelNotFound,
    PipelineNotFound,
    ValidationFailed,
    VersionNotFound,
)
from modelyard.pipelines.models import (
    Pipeline,
    PipelineVersion,
)
from modelyard.pipelines.schemas import (
    PipelineApplied,
    PipelineList,
    PipelinePublic,
    StageSummary,
)
from modelyard.pipelines.spec import Limits, PipelineSpec, spec_hash
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.spec.parse import parse_spec
from modelyard.registry import service as registry

API = "/api/v1"
# the name of the stage runs queue (``dispatch.STAGE_RUNS``)
QUEUE = "pipelines"


def defaults(ctx: AppContext) -> Limits:
    """Stage limits a spec does not set, from the settings."""
    s = ctx.settings
    return Limits(concurrency=s.pipeline_stage_concurrency, batch_size=s.pipeline_batch_size)


def load_spec(ctx: AppContext, pipeline_id: str, version: int) -> tuple[str, PipelineSpec]:
    """The pipeline's name and the parsed spec of one version (versions are immutable: cached)."""
    cache = ctx.specs
    hit = cache.get((pipeline_id, version))
    if hit is None:
        with ctx.uow() as session:
            row = session.execute(
                select(Pipeline.name, PipelineVersion.spec)
                .join(PipelineVersion, PipelineVersion.pipeline_id == Pipeline.id)
                .where(Pipeline.id == pipeline_id, PipelineVersion.version == version)
            ).one_or_none()
        if row is None:
            raise PipelineNotFound(f"{pipeline_id} v{version}")
        hit = cache[(pipeline_id, version)] = (row[0], parse_spec(row[1], defaults=defaults(ctx)))
    return hit


def wake(ctx: AppContext) -> None:
    """Tell this process's dispatcher (if it runs one) that stage runs became ready."""
    wake_loop(ctx, QUEUE)


# -- pipelines ---------------------------------------------------------------------------------------


def _registry_problems(session: Session, spec: PipelineSpec) -> list[dict[str, str]]:
    """Problems only the registry and the Python path can tell: unknown models, unimportable modules,
    an optional extra that is not installed."""
    found = []
    for name, stage in spec.stages.items():
        uses = stage_kind(stage.kind).uses(stage)
        gone = extras.missing(uses.extra) if uses.extra else []
        if gone:
            detail = extras.needs(uses.extra, f"stage type {stage.kind}", gone)
            found.append({"field": f"stages.{name}.type", "detail": detail})
        if uses.model is not None:
            model, version = uses.model
            try:
                registry.resolve_version(session=session, name=model, version=version)
            except (ModelNotFound, VersionNotFound) as exc:
                found.append({"field": f"stages.{name}.{uses.model_field}", "detail": exc.detail})
        for where, module in uses.modules.items():
            try:
                missing = importlib.util.find_spec(module) is None
            except (ImportError, ValueError):
                missing = True
            if missing:
                found.append(
                    {"field": f"stages.{name}.{where}", "detail": f"module {module!r} cannot be imported"}
                )
    return found


def apply(ctx: AppContext, document: Any) -> PipelineApplied:
    """Create a pipeline or add a version of it; an identical spec changes nothing (``changed`` false)."""
    spec = parse_spec(document, defaults=defaults(ctx))
    digest = spec_hash(spec.document)
    with ctx.uow() as session:
        problems = _registry_problems(session, spec)
        if problems:
            raise ValidationFailed(
                f"the pipeline spec has {len(problems)} problem{'s' if len(problems) > 1 else ''}: "
                f"{problems[0]['field']}: {problems[0]['detail']}",
                errors=problems,
            )
        pipeline = session.scalar(select(Pipeline).where(Pipeline.name == spec.name))
        changed = True
        if pipeline is None:
            pipeline = Pipeline(name=spec.name, latest_version=1)
            session.add(pipeline)
            session.flush()
        else:
            latest = session.get(PipelineVersion, (pipeline.id, pipeline.latest_version))
            if latest is not None and latest.spec_hash == digest:
                changed = False
            else:
                pipeline.latest_version += 1
        if changed:
            session.add(
                PipelineVersion(
                    pipeline_id=pipeline.id,
                    version=pipeline.latest_version,
                    spec=spec.document,
                    spec_hash=digest,
                )
            )
            pipeline.description = spec.description
            pipeline.archive_after_seconds = spec.archive_after_seconds
            pipeline.updated_at = utcnow()
        public = pipeline_public(pipeline, spec)
    return PipelineApplied(**public.model_dump(), changed=changed)


def pipeline_public(pipeline: Pipeline, spec: PipelineSpec) -> PipelinePublic:
    """The wire form of a pipeline and its latest spec."""
    return PipelinePublic(
        name=pipeline.name,
        description=pipeline.description,
        version=pipeline.latest_version,
        raw_type=spec.raw_type,
        stages=[
            StageSummary(
                name=s.name,
                type=s.kind,
                inputs=list(s.inputs),
                accepts=" or ".join(s.accepts),
                produces=s.produces,
                version=s.version,
                concurrency=s.limits.concurrency,
                batch_size=s.limits.batch_size,
                max_attempts=s.limits.retry.max_attempts,
            )
            for s in spec.stages.values()
        ],
        archive_after_seconds=pipeline.archive_after_seconds,
        spec=spec.document,
        created_at=pipeline.created_at,
        updated_at=pipeline.updated_at,
    )


def get_pipeline(*, session: Session, name: str) -> Pipeline:
    """The pipeline called ``name``."""
    found = session.scalar(select(Pipeline).where(Pipeline.name == name))
    if found is None:
        raise PipelineNotFound(name)
    return found


def describe(ctx: AppContext, name: str) -> PipelinePublic:
    """A pipeline with its latest spec."""
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=name)
    return pipeline_public(pipeline, load_spec(ctx, pipeline.id, pipeline.latest_version)[1])


def list_pipelines(ctx: AppContext, *, offset: int = 0, limit: int = 100) -> PipelineList:
    """Pipelines by name."""
    with ctx.uow() as session:
        total = session.scalar(select(func.count()).select_from(Pipeline)) or 0
        rows = session.scalars(select(Pipeline).order_by(Pipeline.name).offset(offset).limit(limit)).all()
    items = [pipeline_public(p, load_spec(ctx, p.id, p.latest_version)[1]) for p in rows]
    return PipelineList(items=items, total=total)
