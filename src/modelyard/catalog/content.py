"""Inference for any content: an uploaded file or a URL run on the fly through the stages of a
collection's bound pipelines that read the raw data and say something about it (``inferrer`` stages, and
``model`` stages over images), each run as the pipeline runs it (the same kind, parameters and
pre/post-processing, a model at the collection's current version of it), stored nowhere; and embedding
such content for a vector search, by the producer of the searched field at the version searched, so the
query vector is comparable with the stored ones. No FastAPI, no DBOS."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from modelyard.catalog.schemas import ContentInference, ContentInferences, SearchQuery
from modelyard.catalog.service import bound_pipelines, get_collection
from modelyard.catalog.versions import current_versions
from modelyard.context import AppContext
from modelyard.errors import Conflict, InvalidQuery, ModelyardError
from modelyard.fetch import fetch
from modelyard.pipelines.service import get_pipeline, load_spec
from modelyard.pipelines.spec import RAW, StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import Item
from modelyard.pipelines.stages.batch import run_stage


@dataclass(frozen=True, slots=True)
class Inferrer:
    """A stage of a bound pipeline that reads the raw content (an ``inferrer`` stage, or a ``model`` stage
    over images), as the collection runs it: its producer and the stage, a model pinned to its version."""

    producer: str
    version: str | None  # None: the model version the stage resolves to
    stage: StageSpec

    def at(self, version: int) -> Inferrer:
        """The same stage with its model at ``version``."""
        return Inferrer(self.producer, None, _with_model_version(self.stage, version))


RUN_ON_THE_FLY = ("inferrer", "model")  # kinds whose output is what a producer said about the content
VALUES = ("json", "array")  # outputs harvested as inferences (``binding``): images are not values


def _inferrers(ctx: AppContext, session: Session, collection_id: str) -> list[Inferrer]:
    pinned = current_versions(session, collection_id)
    found: dict[str, Inferrer] = {}
    for name in bound_pipelines(session, collection_id):
        pipeline = get_pipeline(session=session, name=name)
        for stage in load_spec(ctx, pipeline.id, pipeline.latest_version)[1].stages.values():
            if stage.kind in RUN_ON_THE_FLY and stage.inputs == (RAW,) and stage.produces in VALUES:
                item = _as_run(stage, pinned)
                found.setdefault(item.producer, item)
    return list(found.values())


def _with_model_version(stage: StageSpec, version: int) -> StageSpec:
    if stage_kind(stage.kind).uses(stage).model_field == "params.model":
        return replace(stage, params={**stage.params, "model_version": version})
    return replace(stage, config={**stage.config, "model_version": version})


def _as_run(stage: StageSpec, pinned: dict[str, str]) -> Inferrer:
    model = stage_kind(stage.kind).uses(stage).model
    if model is not None:  # a model's values: at the collection's current version of it
        producer = str(model[0])
        item = Inferrer(producer, None, stage)
        return item.at(int(pinned[producer])) if pinned.get(producer, "").isdigit() else item
    producer = str(stage.config.get("inferrer") or stage.name)
    return Inferrer(producer, stage.version, stage)


def _run(ctx: AppContext, item: Inferrer, data: bytes, where: str) -> ContentInference:
    """The stage over ``data`` as a batch of one, exactly as the pipeline runs it (content it cannot read
    is the reader's own error, ``422`` for what is not an image, naming ``where`` the content came from)."""
    [out], resolved = run_stage(item.stage, [Item("", "", {}, {RAW: data})], ctx.stage_env.get())
    if out.error is not None:
        if isinstance(out.error, ModelyardError) and out.error.field is None:
            out.error.field = where
        raise out.error
    values = out.value
    if isinstance(values, np.ndarray):
        values = values.astype(np.float32).reshape(-1).tolist()
    version = resolved.rpartition("@")[2] if resolved else item.version or ""
    return ContentInference(producer=item.producer, version=version, values=values)


def read(ctx: AppContext, data: bytes | None, url: str | None) -> bytes:
    """The content: the uploaded bytes, or the URL fetched (bounded; private addresses refused unless
    allowed). ``InvalidQuery`` unless exactly one is given."""
    if (data is None) == (url is None):
        raise InvalidQuery("give either an uploaded file or a url", field="url")
    return data if data is not None else fetch(ctx, url or "").data


def infer(ctx: AppContext, collection: str, data: bytes, where: str = "file") -> ContentInferences:
    """Every inferrer and model stage of the collection's bound pipelines that reads the raw data, on
    ``data``, stored nowhere. ``409`` when no such stage is bound."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        items = _inferrers(ctx, session, coll.id)
    if not items:
        raise Conflict(
            f"collection {collection!r} is bound to no pipeline with inferrer or model stages",
            field="pipelines",
        )
    return ContentInferences(items=[_run(ctx, item, data, where) for item in items])


def embed_query(
    ctx: AppContext, collection: str, query: SearchQuery, data: bytes, where: str = "file"
) -> SearchQuery:
    """``query`` with its vector made from ``data`` (sent as ``where``) by the producer of its vector field,
    at the version the search will use (``InvalidQuery`` naming ``vector`` when that cannot be)."""
    q = query.vector
    if q is None:
        raise InvalidQuery("searching by an image or URL needs a vector query (its field)", field="vector")
    if q.record is not None or q.vector is not None:
        raise InvalidQuery("give a record, a vector, or an image/url: one of them", field="vector")
    producer, *path = q.field.split(".")
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        pinned = current_versions(session, coll.id)
        version = q.version or pinned.get(producer)
        items = [i for i in _inferrers(ctx, session, coll.id) if i.producer == producer]
    if not items:
        raise InvalidQuery(
            f"no bound stage reading the raw data produces {producer!r}: search it by record or vector",
            field="vector.field",
        )
    item = items[0]
    if item.version is None and version is not None:
        if not version.isdigit():
            raise InvalidQuery(f"{producer} has no version {version!r}", field="vector.version")
        item = item.at(int(version))
    elif item.version is not None and version is not None and item.version != version:
        raise InvalidQuery(
            f"the bound stage runs {producer} {item.version}, not {version}: content can only be embedded "
            "by the version the stage runs",
            field="vector.version",
        )
    values: Any = _run(ctx, item, data, where).values
    for key in path:
        if not isinstance(values, dict) or key not in values:
            raise InvalidQuery(f"{producer} gives no {q.field!r}", field="vector.field")
        values = values[key]
    vector = q.model_copy(update={"vector": [float(x) for x in values], "version": version})
    return query.model_copy(update={"vector": vector})
