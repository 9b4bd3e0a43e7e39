"""Inference for any content: an uploaded file or a URL run on the fly through the inferrer stages of a
collection's bound pipelines (the same inferrers with the same parameters, a model at the collection's
current version of it), stored nowhere; and embedding such content for a vector search, by the producer of
the searched field at the version searched, so the query vector is comparable with the stored ones.
No FastAPI, no DBOS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from modelyard.catalog.schemas import ContentInference, ContentInferences, SearchQuery
from modelyard.catalog.service import bound_pipelines, get_collection
from modelyard.catalog.versions import current_versions
from modelyard.context import AppContext
from modelyard.errors import Conflict, InvalidQuery
from modelyard.fetch import fetch
from modelyard.inferrers import service as inferrers
from modelyard.pipelines.service import get_pipeline, load_spec
from modelyard.pipelines.spec import StageSpec


@dataclass(frozen=True, slots=True)
class Inferrer:
    """An inferrer stage of a bound pipeline, as the collection runs it: its producer and parameters."""

    producer: str
    version: str | None  # None: the model version the parameters resolve to
    inferrer: str
    params: dict[str, Any]


def _inferrers(ctx: AppContext, session: Session, collection_id: str) -> list[Inferrer]:
    pinned = current_versions(session, collection_id)
    found: dict[str, Inferrer] = {}
    for name in bound_pipelines(session, collection_id):
        pipeline = get_pipeline(session=session, name=name)
        for stage in load_spec(ctx, pipeline.id, pipeline.latest_version)[1].stages.values():
            if stage.kind == "inferrer":
                item = _as_run(stage, pinned)
                found.setdefault(item.producer, item)
    return list(found.values())


def _as_run(stage: StageSpec, pinned: dict[str, str]) -> Inferrer:
    params = dict(stage.params)
    inferrer = str(stage.config["inferrer"])
    if "model" in params:  # a model's values: at the collection's current version of it
        producer = str(params["model"])
        if pinned.get(producer, "").isdigit():
            params["model_version"] = int(pinned[producer])
        return Inferrer(producer, None, inferrer, params)
    return Inferrer(inferrer, stage.version, inferrer, params)


def _run(ctx: AppContext, item: Inferrer, data: bytes) -> ContentInference:
    got = inferrers.infer(ctx, item.inferrer, data, item.params)
    values = got["result"]
    if isinstance(values, dict) and set(values) == {"dtype", "shape", "data"}:
        values = np.asarray(values["data"], dtype=np.float32).reshape(-1).tolist()
    version = str(got["model"]["version"]) if "model" in got else item.version or ""
    return ContentInference(producer=item.producer, version=version, values=values)


def read(ctx: AppContext, data: bytes | None, url: str | None) -> bytes:
    """The content: the uploaded bytes, or the URL fetched (bounded; private addresses refused unless
    allowed). ``InvalidQuery`` unless exactly one is given."""
    if (data is None) == (url is None):
        raise InvalidQuery("give either an uploaded file or a url", field="url")
    return data if data is not None else fetch(ctx, url or "").data


def infer(ctx: AppContext, collection: str, data: bytes) -> ContentInferences:
    """Every inferrer of the collection's bound pipelines on ``data``, stored nowhere. ``409`` when no
    inferrer stage is bound."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        items = _inferrers(ctx, session, coll.id)
    if not items:
        raise Conflict(f"collection {collection!r} is bound to no pipeline with inferrers", field="pipelines")
    return ContentInferences(items=[_run(ctx, item, data) for item in items])


def embed_query(ctx: AppContext, collection: str, query: SearchQuery, data: bytes) -> SearchQuery:
    """``query`` with its vector made from ``data`` by the producer of its vector field, at the version the
    search will use (``InvalidQuery`` naming ``vector`` when that cannot be)."""
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
            f"no bound inferrer stage produces {producer!r}: search it by record or vector",
            field="vector.field",
        )
    item = items[0]
    if item.version is None and version is not None:
        if not version.isdigit():
            raise InvalidQuery(f"{producer} has no version {version!r}", field="vector.version")
        item = Inferrer(item.producer, None, item.inferrer, {**item.params, "model_version": int(version)})
    elif item.version is not None and version is not None and item.version != version:
        raise InvalidQuery(
            f"the bound stage runs {producer} {item.version}, not {version}: content can only be embedded "
            "by the version the stage runs",
            field="vector.version",
        )
    values: Any = _run(ctx, item, data).values
    for key in path:
        if not isinstance(values, dict) or key not in values:
            raise InvalidQuery(f"{producer} gives no {q.field!r}", field="vector.field")
        values = values[key]
    vector = q.model_copy(update={"vector": [float(x) for x in values], "version": version})
    return query.model_copy(update={"vector": vector})
