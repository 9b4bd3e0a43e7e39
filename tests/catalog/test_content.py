"""Inference for any content: an upload or a URL run on the fly through a collection's inferrers (stored
nowhere), and vector search by an uploaded image or a URL, embedded by the field's producer at the version
searched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from modelyard.catalog.models import Inference
from modelyard.pipelines.models import Event
from tests.catalog.conftest import WITH_PGVECTOR
from tests.catalog.test_versions import C, add_version, bound_collection, settle
from tests.inferrers.images import encode, noise

pytestmark = WITH_PGVECTOR
NAMES = {"red": (220, 20, 30), "crimson": (180, 10, 50), "blue": (20, 30, 220), "grey": (128, 128, 128)}
MODEL_STAGE = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  feat:
    type: model
    model: embedder
    preprocess: {resize: [8, 8], mean: 0, std: 1}
    postprocess: {l2_normalise: true}
"""


def stored(api: Any) -> tuple[int, int]:
    with api.ctx.uow() as session:
        return (
            session.scalar(select(func.count()).select_from(Inference)) or 0,
            session.scalar(select(func.count()).select_from(Event)) or 0,
        )


def by_upload(api: Any, data: bytes, query: dict[str, Any]) -> Any:
    return api.post(f"{C}/search:upload", files={"file": ("q.png", data)}, data={"query": json.dumps(query)})


def test_uploaded_content_runs_through_the_collections_inferrers_and_is_stored_nowhere(api: Any) -> None:
    bound_collection(api, names=NAMES)
    before = stored(api)
    red = Path(api.ctx.settings.data_dir, "img", "red.png").read_bytes()
    resp = api.post(f"{C}/infer", files={"file": ("red.png", red)})
    assert resp.status_code == 200, resp.text
    got = {i["producer"]: i for i in resp.json()["items"]}
    assert set(got) == {"palette", "embedder"}
    assert got["palette"]["version"] == "1" and got["palette"]["values"]["average"] == "#dc141e"
    record = api.get(f"{C}/records/red").json()["inferred"]
    assert got["embedder"]["version"] == "1"
    assert got["embedder"]["values"] == pytest.approx(record["embedder"], abs=1e-6)
    assert stored(api) == before


def test_a_model_stage_infers_uploaded_content_and_embeds_a_search_at_each_version(api: Any) -> None:
    bound_collection(api, names=NAMES, spec=MODEL_STAGE)
    before = stored(api)
    red = Path(api.ctx.settings.data_dir, "img", "red.png").read_bytes()
    resp = api.post(f"{C}/infer", files={"file": ("red.png", red)})
    assert resp.status_code == 200, resp.text
    got = {i["producer"]: i for i in resp.json()["items"]}
    assert set(got) == {"palette", "embedder"} and got["embedder"]["version"] == "1"
    stored_vector = api.get(f"{C}/records/red").json()["inferred"]["embedder"]
    assert got["embedder"]["values"] == pytest.approx(stored_vector, abs=1e-6)  # pre- and post-processed
    assert np.linalg.norm(got["embedder"]["values"]) == pytest.approx(1.0, abs=1e-5)
    query = {"vector": {"field": "embedder", "k": 2}, "inferred": []}
    hits = by_upload(api, red, query).json()["hits"]
    assert [h["record"]["id"] for h in hits] == ["red", "crimson"]
    assert hits[0]["why"]["vector_distance"] == pytest.approx(0.0, abs=1e-5)
    add_version(api, seed=1)
    assert api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"}).status_code == 202
    settle(api)
    now = api.post(f"{C}/infer", files={"file": ("red.png", red)}).json()["items"]
    assert {i["producer"]: i["version"] for i in now} == {"palette": "1", "embedder": "2"}
    for version in ("2", "1"):
        vector = {"field": "embedder", "k": 1, "version": version}
        hit = by_upload(api, red, {**query, "vector": vector}).json()["hits"][0]
        assert hit["record"]["id"] == "red" and hit["why"]["vector_distance"] == pytest.approx(0.0, abs=1e-5)
    assert stored(api)[1] == before[1]  # the re-inference ran in place and the uploads stored nothing


def test_content_at_a_url_is_inferred(api: Any, image_server: Any) -> None:
    bound_collection(api, names=NAMES)
    resp = api.post(f"{C}/infer", params={"url": f"{image_server.url}/img/3.png"})
    assert resp.status_code == 200, resp.text
    direct = api.post(f"{C}/infer", content=encode(noise(3)))
    assert resp.json() == direct.json()


def test_search_by_an_uploaded_image_uses_the_version_searched(api: Any) -> None:
    bound_collection(api, names=NAMES)
    red = Path(api.ctx.settings.data_dir, "img", "red.png").read_bytes()
    query = {"vector": {"field": "embedder", "k": 2}, "inferred": []}
    first = by_upload(api, red, query)
    assert first.status_code == 200, first.text
    hits = first.json()["hits"]
    assert [h["record"]["id"] for h in hits] == ["red", "crimson"]
    assert hits[0]["why"]["vector_distance"] == pytest.approx(0.0, abs=1e-5)
    add_version(api, seed=1)
    api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"})
    settle(api)
    after = by_upload(api, red, query).json()["hits"]
    assert after[0]["record"]["id"] == "red"
    assert after[0]["why"]["vector_distance"] == pytest.approx(0.0, abs=1e-5)  # embedded by version 2
    old = by_upload(api, red, {**query, "vector": {"field": "embedder", "k": 1, "version": "1"}}).json()
    assert old["hits"][0]["why"]["vector_distance"] == pytest.approx(0.0, abs=1e-5)
    colour = by_upload(api, red, {"vector": {"field": "palette.embedding", "k": 1}}).json()
    assert colour["hits"][0]["record"]["id"] == "red"


def test_search_by_a_url(api: Any, image_server: Any) -> None:
    bound_collection(api, names=NAMES)
    query = {"vector": {"field": "embedder", "k": 4}, "inferred": []}
    url = {**query, "vector": {**query["vector"], "url": f"{image_server.url}/img/5.png"}}
    resp = api.post(f"{C}/search", json=url)
    assert resp.status_code == 200, resp.text
    assert resp.json()["hits"] == by_upload(api, encode(noise(5)), query).json()["hits"]


def test_bad_content_is_refused_with_the_exact_4xx(api: Any, image_server: Any) -> None:
    bound_collection(api, names=NAMES)
    before = stored(api)
    not_image = api.post(f"{C}/infer", files={"file": ("x.png", b"definitely not an image")})
    assert not_image.status_code == 422 and not_image.json()["field"] == "file", not_image.text
    assert "as an image" in not_image.json()["detail"]
    text_url = api.post(f"{C}/infer", params={"url": f"{image_server.url}/text"})
    assert text_url.status_code == 422 and text_url.json()["field"] == "url"
    by_text_url = {"vector": {"field": "embedder", "url": f"{image_server.url}/text"}}
    not_found = api.post(f"{C}/search", json=by_text_url)
    assert not_found.status_code == 422 and not_found.json()["field"] == "vector.url"
    empty = api.post(f"{C}/infer", content=b"")
    assert empty.status_code == 400 and empty.json()["field"] == "file"
    red = Path(api.ctx.settings.data_dir, "img", "red.png").read_bytes()
    cases = [
        ("not json", 400, "query"),
        (json.dumps({"text": "red"}), 400, "vector"),
        (json.dumps({"vector": {"field": "embedder", "record": "red"}}), 400, "vector"),
        (json.dumps({"vector": {"field": "nope"}}), 400, "vector.field"),
        (json.dumps({"vector": {"field": "palette.nope"}}), 400, "vector.field"),
    ]
    for query, status, field in cases:
        resp = api.post(f"{C}/search:upload", files={"file": ("q.png", red)}, data={"query": query})
        assert resp.status_code == status and resp.json()["field"] == field, (query, resp.text)
    embedder = json.dumps({"vector": {"field": "embedder"}})
    resp = api.post(f"{C}/search:upload", files={"file": ("x.png", b"nope")}, data={"query": embedder})
    assert resp.status_code == 422 and resp.json()["field"] == "file", resp.text
    assert stored(api) == before
    api.post("/api/v1/collections", json={"name": "bare"})
    unbound = api.post("/api/v1/collections/bare/infer", content=red)
    assert unbound.status_code == 409 and unbound.json()["field"] == "pipelines"
