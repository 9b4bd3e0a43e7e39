"""The content-hash cache of stage outputs. A run's cache key hashes the stage's fingerprint, the model
version it resolved to, its inputs' content hashes and the event's parameters; a done run of the same
stage with the same key gives its output, copied to the new run's own key (each event keeps its object).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import select

from modelyard.context import AppContext
from modelyard.pipelines.models import StageRun, StageState
from modelyard.pipelines.run.settle import Claimed, Settled
from modelyard.pipelines.run.store import same_content
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import outputs
from modelyard.serving.service import InferenceService


def cache_key(stage: StageSpec, resolved: str, hashes: list[str], params: dict[str, Any]) -> str:
    """The cache key of one run: what decides its output."""
    return _key(stage.fingerprint(), resolved, hashes, params)


def raw_cache_keys(stage: StageSpec, resolved: str, hashes: list[str]) -> list[str]:
    """The cache key of a run of ``stage`` (reading the raw data alone, with no parameters) over raw data
    of each content hash of ``hashes``: ``cache_key`` of each, the stage's fingerprint hashed once."""
    fingerprint = stage.fingerprint()
    return [_key(fingerprint, resolved, [digest], {}) for digest in hashes]


def _key(fingerprint: str, resolved: str, hashes: list[str], params: dict[str, Any]) -> str:
    body = orjson.dumps([fingerprint, resolved, hashes, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def resolve(stage: StageSpec, inference: InferenceService) -> str:
    """The model version a stage would run now (part of its cache key), or '' for model-less stages."""
    model = stage_kind(stage.kind).uses(stage).model
    if model is None:
        return ""
    ref = inference.resolve_sync(*model)
    return f"{ref.name}@{ref.version}"


def hits(ctx: AppContext, pipeline_id: str, stage: StageSpec, keys: list[str]) -> dict[str, Any]:
    """Live outputs of ``stage`` already made under any of ``keys``, by key."""
    if not stage.cache or not keys:
        return {}
    with ctx.uow() as session:
        rows = session.execute(
            select(
                StageRun.cache_key,
                StageRun.output_key,
                StageRun.output_kind,
                StageRun.content_hash,
                StageRun.size,
                StageRun.result,
            ).where(
                StageRun.pipeline_id == pipeline_id,
                StageRun.stage == stage.name,
                StageRun.cache_key.in_(set(keys)),
                StageRun.content_hash.is_not(None),
                StageRun.output_key.is_not(None),
                StageRun.archive_key.is_(None),
            )
        ).all()
    return {row[0]: row for row in rows}


def from_cache(ctx: AppContext, pipeline: str, stage: StageSpec, run: Claimed, hit: Any, key: str) -> Settled:
    """Settle ``run`` done with a cached output, copied to its own key unless already there."""
    _, source_key, kind, digest, size, result = hit
    ext = source_key.rsplit(".", 1)[-1]
    target = outputs.output_key(pipeline, stage.name, run.event_id, ext)
    if target != source_key and not same_content(ctx.storage, target, digest, size):
        ctx.storage.copy(source_key, target)
    values = {
        "output_key": target,
        "output_kind": kind,
        "content_hash": digest,
        "size": size,
        "result": result,
        "cache_key": key,
        "cached": True,
        "fingerprint": stage.fingerprint(),
        "logs_key": None,
        "duration_ms": 0.0,
        "wrote": 0,
    }
    return Settled(run, StageState.DONE, values)
