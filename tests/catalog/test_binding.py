"""A collection bound to a pipeline: new and changed records become events (never twice), finished events
become inferences per (record, producer, version), older versions stay queryable, inference on demand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from modelyard.catalog import binding
from modelyard.pipelines import service as pipelines
from tests.catalog.conftest import make_collection
from tests.inferrers.images import encode, solid
from tests.pipelines.conftest import drain

LOOKS = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  aspect: {type: inferrer, inferrer: aspect_ratio}
"""
C = "/api/v1/collections/works"


def images(api: Any, colours: dict[str, tuple[int, int, int]]) -> dict[str, tuple[str, str]]:
    """Solid images in the data dir: id -> (path, sha256)."""
    folder = Path(api.ctx.settings.data_dir) / "img"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, rgb) in enumerate(colours.items()):
        data = encode(solid(rgb, (40 + i, 20)))
        path = folder / f"{name}.png"
        path.write_bytes(data)
        out[name] = (str(path), hashlib.sha256(data).hexdigest())
    return out


def settle(api: Any) -> None:
    drain(api.ctx)
    binding.harvest(api.ctx)


def test_bound_records_become_events_once_and_their_outputs_inferences(api: Any) -> None:
    pipelines.apply(api.ctx, yaml.safe_load(LOOKS))
    make_collection(api, pipelines=["looks"])
    imgs = images(api, {"red": (220, 20, 30), "blue": (20, 30, 220)})
    lines = [{"id": k, "title": k, "source": p, "content_hash": h} for k, (p, h) in imgs.items()]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    first = api.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"}).json()
    assert first["events"] == 2
    again = api.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"}).json()
    assert again["events"] == 0 and again["unchanged"] == 2  # named from id + hash: nothing runs twice
    settle(api)
    red = api.get(f"{C}/records/red").json()
    assert red["inferred"]["aspect_ratio"] == {"width": 40, "height": 20, "aspect_ratio": 2.0}
    assert red["inferred"]["palette"]["average"] == "#dc141e"
    assert len(red["inferred"]["palette"]["embedding"]) == 1000
    listed = api.get(f"{C}/records/red/inferences").json()["items"]
    assert {(i["producer"], i["version"], i["current"]) for i in listed} == {
        ("palette", "1", True),
        ("aspect_ratio", "1", True),
    }
    assert binding.harvest(api.ctx) == 0  # harvested once


def test_a_changed_content_hash_runs_again_and_a_new_stage_version_waits_for_a_switch(api: Any) -> None:
    pipelines.apply(api.ctx, yaml.safe_load(LOOKS))
    make_collection(api, pipelines=["looks"])
    ((path, digest),) = images(api, {"red": (220, 20, 30)}).values()
    api.post(f"{C}/records", json={"id": "r", "source": path, "content_hash": digest})
    settle(api)
    spec = yaml.safe_load(LOOKS)
    spec["stages"]["aspect"]["version"] = 2
    pipelines.apply(api.ctx, spec)
    Path(path).write_bytes(encode(solid((0, 200, 0), (10, 30))))
    new_hash = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    api.patch(f"{C}/records/r", json={"content_hash": new_hash})
    settle(api)
    record = api.get(f"{C}/records/r").json()
    assert record["inferred"]["aspect_ratio"]["width"] == 40  # version 1 stays current until a switch
    listed = api.get(f"{C}/records/r/inferences").json()["items"]
    aspect = {
        i["version"]: (i["current"], i["values"]["width"]) for i in listed if i["producer"] == "aspect_ratio"
    }
    assert aspect == {"2": (False, 10), "1": (True, 40)}
    switched = api.post(f"{C}/versions", json={"producer": "aspect_ratio", "version": 2})
    assert switched.status_code == 202 and switched.json()["state"] == "succeeded"  # every record had it
    assert api.get(f"{C}/records/r").json()["inferred"]["aspect_ratio"]["width"] == 10


def test_infer_on_demand_runs_the_record_again(api: Any) -> None:
    pipelines.apply(api.ctx, yaml.safe_load(LOOKS))
    make_collection(api, pipelines=["looks"])
    ((path, digest),) = images(api, {"red": (220, 20, 30)}).values()
    api.post(f"{C}/records", json={"id": "r", "source": path, "content_hash": digest})
    settle(api)
    resp = api.post(f"{C}/records/r/infer")
    assert resp.status_code == 202 and len(resp.json()["events"]) == 1
    settle(api)
    listed = api.get(f"{C}/records/r/inferences").json()["items"]
    assert {i["event_id"] for i in listed} == set(resp.json()["events"])


def test_infer_refuses_a_record_without_source_or_a_collection_without_pipelines(api: Any) -> None:
    make_collection(api)
    api.post(f"{C}/records", json={"id": "r"})
    resp = api.post(f"{C}/records/r/infer")
    assert resp.status_code == 409 and resp.json()["field"] == "source"
    missing = api.post(f"{C}/records/nope/infer")
    assert missing.status_code == 404


def test_the_worker_heartbeat_harvests_finished_events(api: Any) -> None:
    from modelyard.catalog.workflows import harvest_inferences
    from modelyard.durable.engine import TICKS

    assert harvest_inferences in TICKS
    pipelines.apply(api.ctx, yaml.safe_load(LOOKS))
    make_collection(api, pipelines=["looks"])
    ((path, digest),) = images(api, {"red": (220, 20, 30)}).values()
    api.post(f"{C}/records", json={"id": "r", "source": path, "content_hash": digest})
    drain(api.ctx)
    assert api.get(f"{C}/records/r").json()["inferred"] == {}
    harvest_inferences(api.ctx)
    assert set(api.get(f"{C}/records/r").json()["inferred"]) == {"palette", "aspect_ratio"}


def test_a_bound_pipeline_deleted_later_does_not_stop_records_landing(api: Any) -> None:
    pipelines.apply(api.ctx, yaml.safe_load(LOOKS))
    make_collection(api, pipelines=["looks"])
    assert api.delete("/api/v1/pipelines/looks").status_code == 204
    ((path, digest),) = images(api, {"red": (220, 20, 30)}).values()
    resp = api.post(f"{C}/records", json={"id": "r", "source": path, "content_hash": digest})
    assert resp.status_code == 201


def test_a_vector_of_another_dimension_than_its_versions_is_refused_and_not_stored(api: Any) -> None:
    make_collection(api)
    for rid in ("w0", "w1"):
        assert api.post(f"{C}/records", json={"id": rid}).status_code == 201
    url = f"{C}/records/{{}}/inferences/tagger/{{}}"
    assert api.put(url.format("w0", 1), json={"label": "a", "embedding": [1.0] * 16}).status_code == 204
    resp = api.put(url.format("w1", 1), json={"label": "b", "embedding": [1.0] * 20})
    assert resp.status_code == 400 and resp.json()["field"] == "embedding"
    assert "tagger.embedding has 16 dimensions at version 1; this vector has 20" in resp.json()["detail"]
    assert api.get(f"{C}/records/w1/inferences").json()["items"] == []
    assert api.put(url.format("w1", 2), json={"embedding": [1.0] * 20}).status_code == 204  # its own version
