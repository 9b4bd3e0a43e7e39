"""A collection bound to a pipeline with a ``palette`` and a ``features`` model stage: the current version
per producer, re-inference that switches search at once (never a mixed result, under a concurrent query
load), cancel, rollback, backfill, harvesting a re-run event again, and switches refused with the exact 4xx.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelyard.app import create_app
from modelyard.catalog import binding, reinfer, search
from modelyard.catalog.models import Reinference
from modelyard.catalog.schemas import SearchQuery
from modelyard.pipelines import service as pipelines
from modelyard.registry import service as registry
from tests.catalog.conftest import WITH_PGVECTOR, make_collection
from tests.inferrers.images import encode, solid
from tests.onnx_models import image_embedder
from tests.pipelines.conftest import drain, register_model

LOOKS = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  feat: {type: inferrer, inferrer: features, params: {model: embedder, resize: [8, 8], mean: 0, std: 1}}
"""
C = "/api/v1/collections/works"
COLOURS = {
    "red": (220, 20, 30),
    "crimson": (180, 10, 50),
    "blue": (20, 30, 220),
    "navy": (10, 20, 120),
    "green": (20, 200, 40),
    "olive": (120, 130, 20),
    "grey": (128, 128, 128),
    "white": (250, 250, 250),
}
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def settle(api: Any) -> None:
    """Run every ready batch, harvest, and advance re-inferences until nothing moves."""
    for _ in range(20):
        ran = drain(api.ctx)
        harvested = binding.harvest(api.ctx)
        moved = reinfer.advance(api.ctx)
        if not ran and not harvested and not moved:
            return


def add_version(api: Any, seed: int) -> None:
    path = image_embedder(Path(api.ctx.settings.data_dir) / f"embedder-{seed}.onnx", seed=seed)
    with api.ctx.uow() as session:
        registry.add_version(
            session=session,
            storage=api.ctx.storage,
            name="embedder",
            path=path,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    api.ctx.inference.invalidate("embedder")


def ingest(api: Any, names: dict[str, tuple[int, int, int]]) -> None:
    folder = Path(api.ctx.settings.data_dir) / "img"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, rgb in names.items():
        data = encode(solid(rgb, (24, 16)))
        (folder / f"{name}.png").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        source = str(folder / f"{name}.png")
        lines.append({"id": name, "title": f"{name} square", "source": source, "content_hash": digest})
    body = "\n".join(json.dumps(x) for x in lines).encode()
    got = api.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"})
    assert got.status_code == 200 and got.json()["rejected"] == 0, got.text


def bound_collection(
    api: Any, *, bind: bool = True, names: dict[str, tuple[int, int, int]] = COLOURS, spec: str = LOOKS
) -> None:
    path = image_embedder(Path(api.ctx.settings.data_dir) / "embedder-0.onnx", seed=0)
    register_model(api.ctx, path, "embedder")
    pipelines.apply(api.ctx, yaml.safe_load(spec))
    make_collection(api, pipelines=["looks"] if bind else [])
    ingest(api, names)
    settle(api)


def embeddings(api: Any, version: str) -> dict[str, np.ndarray]:
    """Every record's embedder vector at ``version``."""
    out = {}
    for rid in COLOURS:
        items = api.get(f"{C}/records/{rid}/inferences").json()["items"]
        [values] = [i["values"] for i in items if i["producer"] == "embedder" and i["version"] == version]
        out[rid] = np.asarray(values, dtype=np.float32)
    return out


def current(api: Any) -> dict[str, str]:
    return {v["producer"]: v["current"] for v in api.get(f"{C}/versions").json()["items"]}


def like(api: Any, rid: str, k: int = 3) -> list[str]:
    body = {"vector": {"field": "embedder", "record": rid, "k": k}, "inferred": []}
    resp = api.post(f"{C}/search", json=body)
    assert resp.status_code == 200, resp.text
    return [h["record"]["id"] for h in resp.json()["hits"]]


@WITH_PGVECTOR
def test_palette_and_features_stages_become_searchable_inferences(api: Any) -> None:
    bound_collection(api)
    assert current(api) == {"palette": "1", "embedder": "1"}
    red = api.get(f"{C}/records/red").json()
    assert red["inferred"]["palette"]["average"] == "#dc141e"
    assert len(red["inferred"]["embedder"]) == 16
    assert like(api, "red", k=1) == ["crimson"]  # more like this, itself excluded
    by_colour = api.post(f"{C}/search", json={"colour": {"colours": {"#d01020": 1}, "k": 2}}).json()
    assert [h["record"]["id"] for h in by_colour["hits"]] == ["red", "crimson"]
    by_text = api.post(f"{C}/search", json={"text": "navy", "inferred": []}).json()
    assert [h["record"]["id"] for h in by_text["hits"]] == ["navy"]


def _versions_seen(hits: list[dict[str, Any]], by_version: dict[str, dict[str, np.ndarray]]) -> set[str]:
    """The versions whose vectors every hit of one result carries."""
    seen = set()
    for hit in hits:
        vector = np.asarray(hit["record"]["inferred"]["embedder"], dtype=np.float32)
        rid = hit["record"]["id"]
        seen |= {v for v, table in by_version.items() if np.allclose(table[rid], vector, atol=1e-6)}
    return seen


@WITH_PGVECTOR
def test_a_switch_under_query_load_never_mixes_versions(api: Any) -> None:
    bound_collection(api)
    v1 = embeddings(api, "1")
    add_version(api, seed=1)
    started = api.post(f"{C}/versions", json={"producer": "embedder", "version": 2})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["state"] == "running" and job["from_version"] == "1" and job["total"] == len(COLOURS)
    assert current(api) == {"palette": "1", "embedder": "1"}

    query = SearchQuery.model_validate({"vector": {"field": "embedder", "record": "red", "k": 4}})
    results: list[list[dict[str, Any]]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            found = search.search(api.ctx, "works", query)
            results.append([h.model_dump(mode="json") for h in found.hits])

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: len(results) > 0)
        before = len(results)
        settle(api)
        done = api.get(f"{C}/reinferences/{job['id']}").json()
        assert done["state"] == "succeeded" and done["done"] == done["total"] == len(COLOURS)
        switched = len(results)  # the query running now may have read the old version: the next may not
        wait_until(lambda: len(results) >= max(before + 5, switched + 2))
    finally:
        stop.set()
        thread.join()
    v2 = embeddings(api, "2")
    tables = {"1": v1, "2": v2}
    seen = [_versions_seen(hits, tables) for hits in results]
    assert all(len(s) == 1 for s in seen), "a result mixed vectors of two versions"
    assert seen[0] == {"1"} and seen[-1] == {"2"}
    for hits, versions in zip(results, seen, strict=True):  # ranked by that same version's vectors
        table = tables[next(iter(versions))]
        q = table["red"] / np.linalg.norm(table["red"])
        for hit in hits:
            v = table[hit["record"]["id"]]
            assert hit["why"]["vector_distance"] == pytest.approx(
                1 - float(q @ v / np.linalg.norm(v)), abs=1e-5
            )
    assert current(api) == {"palette": "1", "embedder": "2"}
    assert api.get(f"{C}/records/red").json()["inferred"]["embedder"] == pytest.approx(v2["red"].tolist())


@SQLITE_ONLY
def test_cancel_keeps_the_current_version_and_stops_its_events(api: Any) -> None:
    bound_collection(api)
    add_version(api, seed=1)
    job = api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"}).json()
    cancelled = api.post(f"{C}/reinferences/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    settle(api)
    assert current(api)["embedder"] == "1"
    assert api.get(f"{C}/reinferences/{job['id']}").json()["state"] == "cancelled"
    assert api.get(f"{C}/reinferences/{job['id']}").json()["done"] == 0  # its events were cancelled
    again = api.post(f"{C}/reinferences/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["field"] == "id"
    restarted = api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"})
    assert restarted.status_code == 202  # a cancelled one does not block the next
    settle(api)
    assert current(api)["embedder"] == "2"


@SQLITE_ONLY
def test_rollback_returns_to_the_previous_version_at_once(api: Any) -> None:
    bound_collection(api)
    v1 = embeddings(api, "1")
    first = like(api, "red")
    add_version(api, seed=1)
    api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"})
    settle(api)
    assert current(api)["embedder"] == "2"
    other_app = create_app(api.ctx.settings)  # another API process on the same database
    query = {"vector": {"field": "embedder", "record": "red", "k": 3}}
    with TestClient(other_app, headers=dict(api.headers)) as other:
        warm = other.post(f"{C}/search", json=query).json()["hits"]  # its caches now hold version 2
        assert warm[0]["record"]["inferred"]["embedder"] == pytest.approx(
            embeddings(api, "2")[warm[0]["record"]["id"]].tolist()
        )
        back = api.post(f"{C}/versions/embedder/rollback")
        seen = other.post(f"{C}/search", json=query).json()["hits"]
        assert [h["record"]["id"] for h in seen] == first  # it follows the switch at once
        assert seen[0]["record"]["inferred"]["embedder"] == pytest.approx(
            v1[seen[0]["record"]["id"]].tolist()
        )
    assert back.status_code == 200 and back.json()["current"] == "1" and back.json()["previous"] == "2"
    assert like(api, "red") == first
    shown = api.get(f"{C}/records/red").json()["inferred"]["embedder"]
    assert shown == pytest.approx(v1["red"].tolist())
    listed = api.get(f"{C}/records/red/inferences").json()["items"]
    assert {i["version"]: i["current"] for i in listed if i["producer"] == "embedder"} == {
        "1": True,
        "2": False,
    }


def test_binding_a_pipeline_backfills_the_records_already_there(api: Any) -> None:
    bound_collection(api, bind=False)
    assert api.get(f"{C}/records/red").json()["inferred"] == {}
    resp = api.patch(C, json={"pipelines": ["looks"]})
    assert resp.status_code == 200 and resp.json()["pipelines"] == ["looks"]
    settle(api)
    assert set(api.get(f"{C}/records/red").json()["inferred"]) == {"palette", "embedder"}
    again = api.patch(C, json={"pipelines": ["looks"]})  # bound already: nothing is submitted again
    assert again.status_code == 200
    with api.ctx.uow() as session:
        from modelyard.pipelines.models import Event

        assert session.scalar(select(func.count()).select_from(Event)) == len(COLOURS)


@SQLITE_ONLY
def test_a_re_run_event_is_harvested_again_and_replaces_that_version(api: Any) -> None:
    bound_collection(api)
    before = api.get(f"{C}/records/red/inferences").json()["items"]
    [palette] = [i for i in before if i["producer"] == "palette"]
    Path(api.ctx.settings.data_dir, "img", "red.png").write_bytes(encode(solid((10, 200, 10), (24, 16))))
    rerun = api.post(f"/api/v1/events/{palette['event_id']}/rerun", json={"force": True})
    assert rerun.status_code == 202, rerun.text
    settle(api)
    after = api.get(f"{C}/records/red/inferences").json()["items"]
    [again] = [i for i in after if i["producer"] == "palette"]
    assert again["version"] == "1" and again["current"]
    assert again["values"]["average"] == "#0ac80a"  # the re-run's output replaced the first one


REFUSED = [
    ({"producer": "nope", "version": "1"}, 404, "producer"),  # no stage, no values
    ({"producer": "embedder", "version": "9"}, 404, "version"),  # never registered
    ({"producer": "embedder", "version": "1"}, 409, "version"),  # already current
    ({"producer": "palette", "version": "2"}, 409, "version"),  # the stage runs version 1
    ({"producer": "embedder", "version": "2", "extra": 1}, 422, None),
    ({"producer": "embedder"}, 422, None),
]


@SQLITE_ONLY
def test_switches_that_cannot_happen_are_refused_and_write_nothing(api: Any) -> None:
    bound_collection(api, names={"red": COLOURS["red"]})
    for body, status, field in REFUSED:
        resp = api.post(f"{C}/versions", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        if field is not None:
            assert resp.json()["field"] == field, body
    with api.ctx.uow() as session:
        assert session.scalar(select(func.count()).select_from(Reinference)) == 0
    assert current(api) == {"palette": "1", "embedder": "1"}
    no_previous = api.post(f"{C}/versions/embedder/rollback")
    assert no_previous.status_code == 409 and no_previous.json()["field"] == "producer"
    assert api.post(f"{C}/versions/nope/rollback").status_code == 404
    assert api.get(f"{C}/reinferences/nope").status_code == 404
    add_version(api, seed=1)
    assert api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"}).status_code == 202
    second = api.post(f"{C}/versions", json={"producer": "embedder", "version": "2"})
    assert second.status_code == 409 and second.json()["field"] == "producer"
    during = api.post(f"{C}/versions/embedder/rollback")
    assert during.status_code == 409 and during.json()["field"] == "producer"
