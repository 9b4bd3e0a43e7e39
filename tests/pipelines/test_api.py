"""Pipeline and event routes over HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.imageserver import ImageServer
from tests.pipelines.conftest import drain, write_images

SPEC = """
name: looks
raw: image
archive_after: 30d
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 2}}
  aspect: {type: inferrer, inferrer: aspect_ratio}
  size: {type: python, callable: "tests.pipelines.stages:vector", output_type: array}
"""
YAML = {"Content-Type": "application/yaml"}


def apply(api: Any, text: str = SPEC) -> Any:
    return api.post("/api/v1/pipelines", content=text, headers=YAML)


def test_apply_creates_then_versions_then_is_idempotent(api: Any) -> None:
    first = apply(api)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["changed"]
    assert [s["name"] for s in first.json()["stages"]] == ["palette", "aspect", "size"]
    again = apply(api)
    assert again.status_code == 200 and not again.json()["changed"]
    changed = apply(api, SPEC.replace("top_k: 2", "top_k: 4"))
    assert changed.status_code == 201 and changed.json()["version"] == 2
    as_json = api.post(
        "/api/v1/pipelines", json={"name": "tiny", "stages": {"h": {"type": "inferrer", "inferrer": "phash"}}}
    )
    assert as_json.status_code == 201
    assert {p["name"] for p in api.get("/api/v1/pipelines").json()["items"]} == {"looks", "tiny"}
    assert api.get("/api/v1/pipelines/looks").json()["archive_after_seconds"] == 30 * 86400


def test_bad_spec_is_a_422_listing_every_problem(api: Any) -> None:
    resp = apply(
        api,
        """
name: bad
stages:
  a: {type: teleport}
  b: {type: inferrer, inferrer: palette, inputs: [nowhere]}
  c: {type: python, callable: "m:f", inputs: [d]}
  d: {type: python, callable: "m:f", inputs: [c]}
  e: {type: python, callable: "m:f", output_type: json}
  f: {type: inferrer, inferrer: phash, inputs: [e]}
""",
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "validation-failed"
    details = " | ".join(f"{e['field']}: {e['detail']}" for e in body["errors"])
    for fragment in [
        "unknown stage type 'teleport'",
        "'nowhere' is not a stage",
        "cycle",
        "reads image but e produces json",
    ]:
        assert fragment in details
    assert apply(api, "name: [unclosed").status_code == 422
    assert api.get("/api/v1/pipelines/bad").status_code == 404


def test_events_run_and_every_stage_is_viewable(api: Any, image_server: ImageServer) -> None:
    assert apply(api).status_code == 201
    one = api.post(
        "/api/v1/pipelines/looks/events", json={"name": "first", "source": f"{image_server.url}/img/1.png"}
    )
    assert one.status_code == 202 and one.json()["created"] == 1
    bulk = api.post(
        "/api/v1/pipelines/looks/events",
        json={
            "events": [{"name": f"n{i}", "source": f"{image_server.url}/img/{i}.png"} for i in range(2, 5)]
        },
    )
    assert bulk.json()["created"] == 3
    repeat = api.post(
        "/api/v1/pipelines/looks/events", json={"events": [{"name": "n2", "source": "elsewhere"}]}
    )
    assert repeat.json() == {
        "created": 0,
        "existing": 1,
        "events": [{**bulk.json()["events"][0], "created": False}],
    }
    eid = one.json()["events"][0]["id"]
    early = api.get(f"/api/v1/events/{eid}/stages/palette/output")
    assert early.status_code == 409
    drain(api.ctx)
    event = api.get(f"/api/v1/events/{eid}").json()
    assert event["state"] == "complete" and event["stage"] is None and event["latency_ms"] > 0
    assert [s["stage"] for s in event["stages"]] == ["raw", "palette", "aspect", "size"]
    assert event["raw"]["fetches"] == 1 and event["raw"]["kind"] == "http"
    aspect = next(s for s in event["stages"] if s["stage"] == "aspect")
    assert aspect["result"] == {"width": 64, "height": 48, "aspect_ratio": 1.333333}
    assert aspect["output"]["key"] == f"pipelines/looks/aspect/{eid}.json"
    palette = api.get(f"/api/v1/events/{eid}/stages/palette/output")
    assert palette.headers["content-type"] == "application/json" and len(palette.json()["top"]) == 2
    arr = api.get(f"/api/v1/events/{eid}/stages/size/output")
    assert arr.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(arr.content)).dtype == np.float32
    raw = api.get(f"/api/v1/events/{eid}/stages/raw/output")
    assert raw.content.startswith(b"\x89PNG") and raw.headers["content-type"] == "image/png"
    assert image_server.hits["/img/1.png"] == 1
    assert api.get(f"/api/v1/events/{eid}/stages/nope/output").json()["code"] == "stage-run-not-found"
    assert api.get("/api/v1/events/nope").json()["code"] == "event-not-found"
    by_name = api.get("/api/v1/pipelines/looks/events/first").json()
    assert by_name["id"] == eid
    listed = api.get("/api/v1/pipelines/looks/events", params={"state": "complete"}).json()
    assert listed["total"] == 4


def test_invalid_events_are_all_listed_and_none_stored(api: Any) -> None:
    apply(api)
    resp = api.post(
        "/api/v1/pipelines/looks/events",
        json={
            "events": [
                {"name": "ok", "source": "in/a.png"},
                {"name": "x", "source": "/etc/passwd"},
                {"name": "y", "source": "in/a.png", "stages": ["nope"]},
            ]
        },
    )
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == ["events[1].source", "events[2].stages"]
    assert api.get("/api/v1/pipelines/looks/events").json()["total"] == 0
    assert api.post("/api/v1/pipelines/nope/events", json={"name": "a", "source": "a"}).status_code == 404


def test_watchers_count_queues_and_group_errors(api: Any, image_server: ImageServer) -> None:
    apply(api)
    api.post(
        "/api/v1/pipelines/looks/events",
        json={
            "events": [
                {"name": "ok", "source": f"{image_server.url}/img/1.png"},
                {"name": "gone", "source": f"{image_server.url}/missing.png"},
                {"name": "gone2", "source": f"{image_server.url}/missing2.png"},
                {"name": "text", "source": f"{image_server.url}/text"},
            ]
        },
    )
    waiting = api.get("/api/v1/pipelines/looks/queues").json()
    raw = waiting["stages"][0]
    assert (raw["stage"], raw["ready"], waiting["events"]["pending"]) == ("raw", 4, 4)
    assert raw["oldest_ready_seconds"] >= 0
    drain(api.ctx)
    snap = api.get("/api/v1/pipelines/looks/queues").json()
    assert snap["events"] == {"pending": 0, "running": 0, "complete": 1, "failed": 3, "cancelled": 0}
    raw = snap["stages"][0]
    assert (raw["done"], raw["failed"], raw["throughput_per_s"]) == (1, 3, round(1 / 60, 3))
    report = api.get("/api/v1/pipelines/looks/errors").json()
    groups = {(g["stage"], g["error_type"]): g for g in report["groups"]}
    assert groups[("raw", "FetchFailed")]["count"] == 2
    assert sorted(groups[("raw", "FetchFailed")]["events"]) == ["gone", "gone2"]
    assert groups[("raw", "UndecodableInput")]["events"] == ["text"]
    failed = api.get("/api/v1/pipelines/looks/events", params={"state": "failed"}).json()
    assert {e["name"]: e["error_stage"] for e in failed["items"]} == {
        "gone": "raw",
        "gone2": "raw",
        "text": "raw",
    }


def test_queue_and_event_streams_send_snapshots(api: Any) -> None:
    apply(api)
    [path] = write_images(api.ctx.settings.data_dir / "in", 1)
    eid = api.post("/api/v1/pipelines/looks/events", json={"name": "a", "source": str(path)}).json()[
        "events"
    ][0]["id"]
    drain(api.ctx)
    with api.stream("GET", f"/api/v1/events/{eid}/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[0].startswith("id: ") and lines[1] == "event: event" and '"state":"complete"' in lines[2]
    with api.stream("GET", "/api/v1/pipelines/looks/queues/stream") as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                assert '"complete":1' in line
                break


def test_stage_run_and_event_ends_are_in_the_event_log(api: Any) -> None:
    apply(api)
    paths = write_images(api.ctx.settings.data_dir / "in", 2)
    done, dropped = (
        api.post("/api/v1/pipelines/looks/events", json={"name": n, "source": str(p)}).json()["events"][0][
            "id"
        ]
        for n, p in zip(("a", "b"), paths, strict=True)
    )
    assert api.post(f"/api/v1/events/{dropped}/cancel").json()["state"] == "cancelled"
    drain(api.ctx)

    def logged(eid: str) -> list[tuple[str, str, str | None]]:
        items = api.get("/api/v1/log", params={"topics": "pipelines.", "subject": eid}).json()["items"]
        return [(e["topic"], e["data"]["state"], e["data"].get("stage")) for e in items]

    stages = ["raw", "palette", "aspect", "size"]
    ran = logged(done)
    assert sorted(ran[:-1]) == sorted(("pipelines.stage.done", "done", s) for s in stages)
    assert ran[-1] == ("pipelines.event.done", "complete", None)
    assert logged(dropped) == [("pipelines.event.done", "cancelled", None)]


def test_rerun_cancel_archive_and_restore(api: Any) -> None:
    apply(api)
    [path] = write_images(api.ctx.settings.data_dir / "in", 1)
    eid = api.post("/api/v1/pipelines/looks/events", json={"name": "a", "source": str(path)}).json()[
        "events"
    ][0]["id"]
    drain(api.ctx)
    again = api.post(f"/api/v1/events/{eid}/rerun", json={"stage": "aspect"}).json()
    assert {s["stage"]: s["state"] for s in again["stages"]}["aspect"] == "ready"
    drain(api.ctx)
    ev = api.get(f"/api/v1/events/{eid}").json()
    assert ev["runs"] == 2 and next(s for s in ev["stages"] if s["stage"] == "aspect")["cached"]
    assert api.post(f"/api/v1/events/{eid}/cancel").status_code == 409  # already complete
    archived = api.post(f"/api/v1/events/{eid}/archive").json()
    aspect = next(s for s in archived["stages"] if s["stage"] == "aspect")
    assert aspect["output"]["archived"] and aspect["output"]["key"].startswith(
        "archive/pipelines/looks/aspect/"
    )
    assert archived["archived_at"] is not None
    gone = api.get(f"/api/v1/events/{eid}/stages/aspect/output")
    assert gone.status_code == 409 and gone.json()["code"] == "output-archived"
    assert api.get("/api/v1/pipelines/looks/events", params={"archived": True}).json()["total"] == 1
    assert api.ctx.storage.exists(aspect["output"]["key"])
    restored = api.post(f"/api/v1/events/{eid}/restore").json()
    assert restored["archived_at"] is None
    assert api.get(f"/api/v1/events/{eid}/stages/aspect/output").json()["aspect_ratio"] == 1.333333
    second = api.post("/api/v1/pipelines/looks/events", json={"name": "b", "source": str(path)}).json()[
        "events"
    ][0]["id"]
    cancelled = api.post(f"/api/v1/events/{second}/cancel").json()
    assert cancelled["state"] == "cancelled" and {s["state"] for s in cancelled["stages"]} == {"skipped"}


def test_logs_route_returns_prints_and_traceback(api: Any) -> None:
    apply(
        api,
        'name: loud\nstages:\n  a: {type: python, callable: "tests.pipelines.stages:boom", retry: {max_attempts: 1}}\n',
    )
    [path] = write_images(api.ctx.settings.data_dir / "in", 1)
    eid = api.post("/api/v1/pipelines/loud/events", json={"name": "a", "source": str(path)}).json()["events"][
        0
    ]["id"]
    drain(api.ctx)
    logs = api.get(f"/api/v1/events/{eid}/stages/a/logs")
    assert logs.headers["content-type"].startswith("text/plain")
    assert logs.text.startswith("about to fail\n") and "RuntimeError: boom on a" in logs.text


def test_spec_nested_hundreds_of_levels_deep_is_a_422(api: Any) -> None:
    deep = (
        "name: deep\nstages:\n  a: {type: inferrer, inferrer: palette, params: "
        + "[" * 400
        + "]" * 400
        + "}\n"
    )
    resp = apply(api, deep)
    assert resp.status_code == 422, resp.text
    assert "levels deep" in resp.json()["detail"]
    as_json = api.post(
        "/api/v1/pipelines",
        content='{"name": "deep", "stages": ' + "[" * 400 + "]" * 400 + "}",
        headers={"Content-Type": "application/json"},
    )
    assert as_json.status_code == 422, as_json.text


def test_spec_over_its_size_limit_is_a_413(api: Any) -> None:
    limit = api.app.state.ctx.settings.pipeline_spec_max_bytes
    resp = apply(api, SPEC + "#" * limit)
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload-too-large"


@contextmanager
def public_only(settings: Settings) -> Iterator[TestClient]:
    """A client of an app whose user URLs may reach public addresses only (the default)."""
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


def test_event_whose_source_is_a_private_address_is_refused_at_submission(
    settings: Any, tmp_path: Any
) -> None:
    with public_only(settings) as client:
        assert apply(client).status_code == 201
        resp = client.post(
            "/api/v1/pipelines/looks/events",
            json={
                "events": [
                    {"name": "a", "source": "http://127.0.0.1:9/x.png"},
                    {"name": "b", "source": "http://localhost/y.png"},
                    {"name": "c", "source": "http://10.1.2.3/z.png"},
                ]
            },
        )
        assert resp.status_code == 422, resp.text
        errors = resp.json()["errors"]
        assert [e["field"] for e in errors] == [f"events[{i}].source" for i in range(3)]
        assert all("MODELYARD_ALLOW_PRIVATE_URLS" in e["detail"] for e in errors)
        assert client.get("/api/v1/pipelines/looks/events").json()["total"] == 0


def test_nan_and_infinity_in_event_params_are_not_json(api: Any) -> None:
    assert apply(api).status_code == 201
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        resp = api.post(
            "/api/v1/pipelines/looks/events",
            content=b'{"name": "n", "source": "x.png", "params": {"v": ' + number + b"}}",
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 400, (number, resp.text)
        assert "not valid JSON" in resp.json()["detail"]


def test_event_whose_url_host_is_not_a_dns_name_is_refused_at_submission(settings: Any) -> None:
    with public_only(settings) as client:
        assert apply(client).status_code == 201
        resp = client.post(
            "/api/v1/pipelines/looks/events", json={"name": "a", "source": f"http://{'a' * 300}/x.png"}
        )
        assert resp.status_code == 422, resp.text
        assert "not a valid DNS name" in resp.json()["errors"][0]["detail"]


def test_submission_looks_up_a_bounded_number_of_hosts_and_always_checks_ip_literals(settings: Any) -> None:
    from modelyard.pipelines.submission import RESOLVED_HOSTS

    public = [{"name": f"p{i}", "source": f"http://8.8.{i}.8/x.png"} for i in range(RESOLVED_HOSTS)]
    late = [
        {"name": "name", "source": "http://localhost/x.png"},  # not looked up: its fetch refuses it
        {"name": "literal", "source": "http://127.0.0.2/x.png"},
    ]
    with public_only(settings) as client:
        assert apply(client).status_code == 201
        resp = client.post("/api/v1/pipelines/looks/events", json={"events": public + late})
    assert resp.status_code == 422, resp.text
    assert [e["name"] for e in resp.json()["errors"]] == ["literal"]


def test_a_folder_submits_an_event_for_each_matching_file_once(api: Any) -> None:
    apply(api)
    folder = api.ctx.settings.data_dir / "scans"
    write_images(folder, 3)
    (folder / "notes.txt").write_text("not an image")
    write_images(folder / "older", 1)  # a subfolder is not read
    url = "/api/v1/pipelines/looks/events"
    first = api.post(url, json={"folder": "scans", "pattern": "*.png"})
    assert first.status_code == 202, first.text
    assert (first.json()["created"], first.json()["existing"]) == (3, 0)
    assert [e["name"] for e in first.json()["events"]] == [
        "scans/img0.png",
        "scans/img1.png",
        "scans/img2.png",
    ]
    write_images(api.ctx.settings.data_dir / "scans" / "more", 1)[0].rename(folder / "img3.png")
    again = api.post(url, json={"folder": str(folder), "pattern": "*.png"}).json()  # absolute: the same
    assert (again["created"], again["existing"]) == (1, 3)
    drain(api.ctx)
    listed = api.get(url, params={"state": "complete"}).json()
    assert listed["total"] == 4


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"folder": "/etc"}, 400, "outside the data dir"),
        ({"folder": "missing"}, 400, "is not a folder in the data dir"),
        ({"folder": "scans/img0.png"}, 400, "is not a folder in the data dir"),
        ({"folder": "https://example.org/scans"}, 400, "is not a folder in the data dir"),
        ({"folder": "scans", "pattern": "*.tif"}, 400, "no file in 'scans' matches '*.tif'"),
        ({"folder": "scans", "recursive": True}, 422, "Extra inputs are not permitted"),
        ({"folder": ""}, 422, "folder: String should have at least 1 character"),  # said of the folder
    ],
)
def test_a_bad_folder_is_refused_naming_it_and_nothing_is_stored(
    api: Any, body: dict[str, Any], status: int, detail: str
) -> None:
    apply(api)
    write_images(api.ctx.settings.data_dir / "scans", 2)
    resp = api.post("/api/v1/pipelines/looks/events", json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert detail in resp.text
    if status == 400:
        assert resp.json()["field"] == "folder"
    assert api.get("/api/v1/pipelines/looks/events").json()["total"] == 0


def test_a_folder_with_more_files_than_a_request_takes_is_a_422_saying_the_limit(
    pipeline_settings: Settings,
) -> None:
    app = create_app(pipeline_settings.model_copy(update={"pipeline_max_events_per_request": 2}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.ctx = app.state.ctx  # type: ignore[attr-defined]
        apply(client)
        write_images(pipeline_settings.data_dir / "scans", 3)
        resp = client.post("/api/v1/pipelines/looks/events", json={"folder": "scans"})
        assert resp.status_code == 422, resp.text
        assert "more than 2 matching files; the limit is 2" in resp.json()["detail"]
        assert resp.json()["errors"] == [{"field": "folder", "detail": "too many files for one request"}]
        assert client.get("/api/v1/pipelines/looks/events").json()["total"] == 0
