"""The dashboard through its HTTP surface: sign-in, pages with real data, forms that act (and refuse
without their CSRF token or scope)."""

from __future__ import annotations

import asyncio
import html
import io
import re
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from modelyard.app import create_app
from modelyard.settings import Settings
from modelyard.web.pages import changes
from modelyard.web.session import COOKIE
from tests.conftest import ADMIN_KEY
from tests.web.conftest import api_headers, csrf_of, sign_in, wait_for

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
PIPELINE = """
name: images
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  shape: {type: inferrer, inferrer: aspect_ratio}
"""


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _read_key(client: TestClient) -> str:
    resp = client.post("/api/v1/keys", json={"name": "viewer", "scopes": ["read"]}, headers=api_headers())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _job(client: TestClient) -> dict[str, object]:
    resp = client.post("/api/v1/jobs", json={"model": "demo-iris", "rows": IRIS_ROWS}, headers=api_headers())
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_pages_send_a_visitor_without_a_key_to_sign_in(app_client: TestClient) -> None:
    for path in ("/ui/", "/ui/models", "/ui/jobs", "/ui/queues", "/ui/pipelines"):
        resp = app_client.get(path)
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/ui/login?next=")
    assert app_client.get("/").headers["location"] == "/ui/"


def test_sign_in_refuses_an_unknown_key_and_sets_no_cookie(app_client: TestClient) -> None:
    resp = app_client.post("/ui/login", data={"key": "my_not-a-key", "next": "/ui/"})
    assert resp.status_code == 401
    assert "unknown or revoked API key" in resp.text
    assert COOKIE not in app_client.cookies


def test_sign_in_keeps_the_key_in_an_httponly_strict_cookie(app_client: TestClient) -> None:
    resp = app_client.post("/ui/login", data={"key": ADMIN_KEY, "next": "/ui/jobs"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/jobs"
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie


def test_sign_in_never_sends_the_browser_to_another_site(app_client: TestClient) -> None:
    for target in ("https://elsewhere.example/", "//elsewhere.example/ui", "/api/v1/keys"):
        resp = app_client.post("/ui/login", data={"key": ADMIN_KEY, "next": target})
        assert resp.headers["location"] == "/ui/"


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(app_client: TestClient) -> None:
    sign_in(app_client)
    assert app_client.post("/ui/logout", data={"csrf": "0" * 40}).status_code == 403
    token = csrf_of(app_client.get("/ui/").text)
    resp = app_client.post("/ui/logout", data={"csrf": token})
    assert resp.status_code == 303
    assert app_client.get("/ui/").status_code == 303


def test_overview_models_and_queues_show_what_runs(app_client: TestClient) -> None:
    sign_in(app_client)
    job = _job(app_client)
    wait_for(
        lambda: (
            app_client.get(f"/api/v1/jobs/{job['id']}", headers=api_headers()).json()["state"] == "succeeded"
        )
    )
    overview = _text(app_client.get("/ui/").text)
    assert "jobs.chunks" in overview and "worker(s) alive" in overview
    # the throughput lines are counted from the stored jobs, not from what this page saw before
    assert "jobs: 1 finished in the last 60 min, per minute" in overview
    models = app_client.get("/ui/models?q=iris")
    assert models.status_code == 200 and "demo-iris" in models.text
    assert "demo-iris" not in app_client.get("/ui/models?q=no-such-model").text.split("<main")[1]
    model = _text(app_client.get("/ui/models/demo-iris").text)
    assert "features" in model and "FP32" in model and "probabilities" in model
    queues = _text(app_client.get("/ui/queues").text)
    assert "Dead letters (0)" in queues and "alive" in queues
    assert "jobs: 1 finished in the last 60 min, per minute" in queues


def test_job_page_shows_progress_chunks_and_results(app_client: TestClient) -> None:
    sign_in(app_client)
    job = _job(app_client)
    wait_for(
        lambda: (
            app_client.get(f"/api/v1/jobs/{job['id']}", headers=api_headers()).json()["state"] == "succeeded"
        )
    )
    page = _text(app_client.get(f"/ui/jobs/{job['id']}").text)
    assert "2 of 2 rows" in page and "succeeded" in page
    listed = app_client.get("/ui/jobs?state=succeeded").text
    assert str(job["id"])[:8] in listed
    assert str(job["id"])[:8] not in app_client.get("/ui/jobs?state=failed").text
    csv = app_client.get(f"/ui/jobs/{job['id']}/results?format=csv")
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 3  # header + 2 rows
    stream = app_client.get(f"/ui/jobs/{job['id']}/stream")
    assert stream.headers["content-type"].startswith("text/event-stream")
    # the API's own job events passed on: a finished job is one ``finished`` event with the job, then the end
    assert (
        "event: finished" in stream.text
        and '"rows_done":2' in stream.text
        and '"state":"succeeded"' in stream.text
    )


def test_try_it_predicts_pasted_rows_and_explains_bad_input(app_client: TestClient) -> None:
    sign_in(app_client)
    token = csrf_of(app_client.get("/ui/models/demo-iris").text)
    good = app_client.post("/ui/models/demo-iris/predict", data={"csrf": token, "rows": str(IRIS_ROWS)})
    assert good.status_code == 200
    assert '"probabilities"' in html.unescape(good.text) and 'id="outputs"' in good.text
    not_json = app_client.post("/ui/models/demo-iris/predict", data={"csrf": token, "rows": "[[1, 2"})
    assert not_json.status_code == 400 and "not JSON" in not_json.text
    wrong_shape = app_client.post("/ui/models/demo-iris/predict", data={"csrf": token, "rows": "[[1, 2]]"})
    assert wrong_shape.status_code == 400 and 'role="alert"' in wrong_shape.text


def test_upload_through_the_dashboard_adds_a_version(app_client: TestClient, model_dir: Path) -> None:
    sign_in(app_client)
    token = csrf_of(app_client.get("/ui/models/demo-iris").text)
    data = (model_dir / "logreg.onnx").read_bytes()
    files = {"file": ("logreg.onnx", data, "application/octet-stream")}
    refused = app_client.post("/ui/models/demo-iris/versions", files=files)
    assert refused.status_code == 403
    created = app_client.post("/ui/models/demo-iris/versions", files=files, headers={"X-CSRF-Token": token})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 2
    bad = app_client.post(
        "/ui/models/demo-iris/versions",
        files={"file": ("x.onnx", b"not a model", "application/octet-stream")},
        headers={"X-CSRF-Token": token},
    )
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    versions = app_client.get("/api/v1/models/demo-iris", headers=api_headers()).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]


def test_acting_without_the_csrf_token_changes_nothing(app_client: TestClient) -> None:
    sign_in(app_client)
    job = _job(app_client)
    resp = app_client.post(f"/ui/jobs/{job['id']}/cancel", data={})
    assert resp.status_code == 403 and "reload the page" in resp.text
    state = app_client.get(f"/api/v1/jobs/{job['id']}", headers=api_headers()).json()["state"]
    assert state != "cancelled"


def test_a_job_is_cancelled_and_retried_from_its_page(ui_settings: Settings) -> None:
    """Without a worker the job stays queued: cancelled from its page, then queued again by retry."""
    with TestClient(
        create_app(ui_settings.model_copy(update={"worker": False})), follow_redirects=False
    ) as c:
        sign_in(c)
        job = _job(c)
        page = c.get(f"/ui/jobs/{job['id']}").text
        assert "Cancel" in page and ">Retry<" not in page
        cancelled = c.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": csrf_of(page)})
        assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/ui/jobs/{job['id']}"
        page = c.get(f"/ui/jobs/{job['id']}").text
        assert c.get(f"/api/v1/jobs/{job['id']}", headers=api_headers()).json()["state"] == "cancelled"
        assert ">Retry<" in page
        assert c.post(f"/ui/jobs/{job['id']}/retry", data={"csrf": csrf_of(page)}).status_code == 303
        assert c.get(f"/api/v1/jobs/{job['id']}", headers=api_headers()).json()["state"] == "queued"
        # retrying a queued job is the API's conflict, shown as a page
        again = c.post(f"/ui/jobs/{job['id']}/retry", data={"csrf": csrf_of(page)})
        assert again.status_code == 409 and 'role="alert"' in again.text


def test_a_read_key_sees_pages_but_its_actions_are_refused(app_client: TestClient) -> None:
    key = _read_key(app_client)
    sign_in(app_client, key)
    page = app_client.get("/ui/models/demo-iris")
    assert page.status_code == 200
    assert "Try it" not in page.text and "Upload a new version" not in page.text
    token = csrf_of(page.text)  # the sign-out form
    resp = app_client.post("/ui/models/demo-iris/predict", data={"csrf": token, "rows": str(IRIS_ROWS)})
    assert resp.status_code == 403 and "lacks the 'predict' scope" in html.unescape(resp.text)


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def test_pipeline_and_event_pages_show_the_dag_events_errors_and_outputs(
    app_client: TestClient, ui_settings: object
) -> None:
    data_dir = ui_settings.data_dir  # type: ignore[attr-defined]
    (data_dir / "incoming").mkdir(parents=True, exist_ok=True)
    (data_dir / "incoming" / "red.png").write_bytes(_png((200, 30, 90)))
    applied = app_client.post(
        "/api/v1/pipelines",
        content=PIPELINE,
        headers={**api_headers(), "Content-Type": "application/yaml"},
    )
    assert applied.status_code in (200, 201), applied.text
    sign_in(app_client)
    token = csrf_of(app_client.get("/ui/pipelines/images").text)
    submitted = app_client.post(
        "/ui/pipelines/images/events",
        data={"csrf": token, "bulk": "red incoming/red.png\ngone incoming/nope.png"},
    )
    assert submitted.status_code == 200 and "2 event(s) created" in submitted.text
    by_folder = app_client.post(
        "/ui/pipelines/images/events", data={"csrf": token, "folder": "incoming", "pattern": "*.png"}
    )  # red.png again, as "incoming/red.png": a new name
    assert by_folder.status_code == 200 and "1 event(s) created, 0 already there" in by_folder.text
    refused = app_client.post("/ui/pipelines/images/events", data={"csrf": token, "folder": "nowhere"})
    assert refused.status_code == 400 and "is not a folder in the data dir" in refused.text

    def settled() -> bool:
        snap = app_client.get("/api/v1/pipelines/images/queues", headers=api_headers()).json()["events"]
        return bool(snap["complete"] == 2 and snap["failed"] == 1)

    wait_for(settled)
    page = _text(app_client.get("/ui/pipelines/images").text)
    assert "palette" in page and "shape" in page and "FetchFailed" in page
    assert "<svg" in app_client.get("/ui/pipelines/images").text
    failed = app_client.get("/ui/pipelines/images?state=failed").text
    assert "gone" in failed and ">red<" not in failed
    found = app_client.get("/ui/pipelines/images/events/red")
    assert found.status_code == 303
    event = app_client.get(found.headers["location"])
    assert event.status_code == 200
    text = _text(event.text)
    assert '"aspect_ratio"' in html.unescape(event.text) and "1000 numbers" in event.text
    assert "#c81e5a" in text  # the palette's average colour, shown as a swatch and in the JSON
    raw = app_client.get(found.headers["location"] + "/stages/raw/output")
    assert raw.status_code == 200 and raw.content.startswith(b"\x89PNG")
    logs = app_client.get(found.headers["location"] + "/stages/palette/logs")
    assert logs.status_code == 200 and "<h1>Logs of stage palette</h1>" in logs.text

    # archived: the page says so and offers to restore it; restored: back as it was
    archived = app_client.post(found.headers["location"] + "/archive", data={"csrf": token})
    assert archived.status_code == 303
    page = app_client.get(found.headers["location"]).text
    assert "archived" in _text(page) and ">Restore<" in page
    assert app_client.post(found.headers["location"] + "/restore", data={"csrf": token}).status_code == 303
    page = app_client.get(found.headers["location"]).text
    assert ">Archive<" in page and "#c81e5a" in _text(page)
    bad = app_client.post(
        "/ui/pipelines/images/events", data={"csrf": token, "event_name": "x", "source": "../../etc/passwd"}
    )
    assert bad.status_code in (400, 404, 422) and 'role="alert"' in bad.text


def test_a_missing_thing_is_a_page_saying_so(app_client: TestClient) -> None:
    sign_in(app_client)
    resp = app_client.get("/ui/jobs/does-not-exist")
    assert resp.status_code == 404 and "does not exist" in resp.text
    assert "<h1>" in resp.text


def test_array_outputs_summarise_shape_and_values() -> None:
    from modelyard.web.charts import histogram

    svg = histogram(np.arange(100, dtype=np.float32))
    assert svg.count("<rect") == 30 and 'aria-label="histogram of 100 values"' in svg


def _events_on(page: str) -> list[str]:
    return re.findall(r'<a href="/ui/events/[0-9a-f]+">([^<]+)</a>', page)


def _link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return html.unescape(found.group(1)) if found else None


def test_pipeline_page_pages_events_by_cursor_and_groups_their_errors(app_client: TestClient) -> None:
    applied = app_client.post(
        "/api/v1/pipelines", content=PIPELINE, headers={**api_headers(), "Content-Type": "application/yaml"}
    )
    assert applied.status_code in (200, 201), applied.text
    names = [f"lost{i:02d}" for i in range(60)]
    body = {"events": [{"name": n, "source": f"incoming/{n}.png"} for n in names]}
    assert (
        app_client.post("/api/v1/pipelines/images/events", json=body, headers=api_headers()).status_code
        == 202
    )

    def failed() -> bool:
        snap = app_client.get("/api/v1/pipelines/images/queues", headers=api_headers()).json()["events"]
        return bool(snap["failed"] == 60)

    wait_for(failed)
    sign_in(app_client)
    first = app_client.get("/ui/pipelines/images?state=failed").text
    assert "Events (60)" in first and _link(first, "prev") is None
    older = _link(first, "next")
    assert older is not None and "offset" not in older
    second = app_client.get(older).text
    assert _link(second, "next") is None
    listed = _events_on(first) + _events_on(second)
    assert len(_events_on(first)) == 50 and sorted(listed) == names  # each event once, none missing
    newer = _link(second, "prev")
    assert newer is not None and _events_on(app_client.get(newer).text) == _events_on(first)

    errors = _text(first.split('id="er-h"', 1)[1])
    assert re.search(r"raw · FetchFailed · 60 event\(s\)", errors), errors
    hit = re.findall(r'href="/ui/pipelines/images/events/([^"]+)"', first.split('id="er-h"', 1)[1])
    assert len(hit) == 5 and set(hit) <= set(names)  # the newest events it hit, each a link
    assert app_client.get("/ui/pipelines/images?before=forged").status_code == 400


def test_models_are_listed_by_name_fifty_a_page(app_client: TestClient) -> None:
    for n in range(60):
        body = {"name": f"m{n:02d}", "description": "in the shop" if n % 20 == 0 else ""}
        assert app_client.post("/api/v1/models", json=body, headers=api_headers()).status_code == 201
    sign_in(app_client)
    first = app_client.get("/ui/models").text
    shown = re.findall(r'href="/ui/models/([\w-]+)"', first)
    assert shown == ["demo-iris", *(f"m{n:02d}" for n in range(49))]
    assert "1\N{EN DASH}50 of 61" in first and "next →" in first
    rest = re.findall(r'href="/ui/models/([\w-]+)"', app_client.get("/ui/models?offset=50").text)
    assert rest == [f"m{n:02d}" for n in range(49, 60)]
    found = app_client.get("/ui/models?q=SHOP").text
    assert re.findall(r'href="/ui/models/(m\d\d)"', found) == ["m00", "m20", "m40"]
    assert "3 of 3 model(s)" in found


def test_a_job_page_lists_its_bad_rows_by_number(app_client: TestClient) -> None:
    columns = app_client.get("/api/v1/models/demo-iris", headers=api_headers()).json()["metadata"]["columns"]
    csv = "\n".join([",".join(columns), "5.1,3.5,1.4,0.2", "x,3.0,5.2,2.3", "6.7,3.0,5.2,2.3"]) + "\n"
    made = app_client.post(
        "/api/v1/jobs/upload",
        files={"file": ("in.csv", csv.encode())},
        data={"model": "demo-iris", "on_error": "skip"},
        headers=api_headers(),
    )
    assert made.status_code == 202, made.text
    job_id = made.json()["id"]
    wait_for(
        lambda: app_client.get(f"/api/v1/jobs/{job_id}", headers=api_headers()).json()["state"] == "succeeded"
    )
    sign_in(app_client)
    page = html.unescape(_text(app_client.get(f"/ui/jobs/{job_id}").text))
    errors = page.split("Errors", 1)[1]
    # the chunk, then a row of the table: the row's number and the reason naming its column
    assert "chunk 0 (rows 0\N{EN DASH}3)" in errors
    assert f"1 row 1: column '{columns[0]}' is not a number: 'x'" in errors, errors


def test_the_queues_page_shows_schedules_with_their_next_run(app_client: TestClient) -> None:
    csv = b"a,b,c,d\n5.1,3.5,1.4,0.2\n"
    put = app_client.put("/api/v1/artifacts/in/x.csv", content=csv, headers=api_headers())
    assert put.status_code == 201, put.text
    body = {"name": "nightly", "cron": "0 2 * * *", "params": {"model": "demo-iris", "uri": "in/x.csv"}}
    made = app_client.post("/api/v1/schedules", json=body, headers=api_headers())
    assert made.status_code == 201, made.text
    sign_in(app_client)
    page = _text(app_client.get("/ui/queues").text)
    schedules = page.split("Schedules", 1)[1]
    next_run = made.json()["next_fire_at"].replace("T", " ").replace("Z", " UTC")  # 2026-12-08 02:00:00 UTC
    assert re.search(rf"nightly 0 2 \* \* \* batch_predict .*\"demo-iris\".* {next_run} ", schedules), (
        schedules
    )


def test_pipelines_are_listed_by_name_fifty_a_page(app_client: TestClient) -> None:
    for n in range(52):
        spec = {
            "name": f"p{n:02d}",
            "raw": "image",
            "stages": {"shape": {"type": "inferrer", "inferrer": "aspect_ratio"}},
        }
        assert app_client.post("/api/v1/pipelines", json=spec, headers=api_headers()).status_code == 201
    sign_in(app_client)
    first = app_client.get("/ui/pipelines").text
    assert re.findall(r'<td><a href="/ui/pipelines/(p\d\d)">', first) == [f"p{n:02d}" for n in range(50)]
    assert "1\N{EN DASH}50 of 52" in first and "next →" in first
    rest = app_client.get("/ui/pipelines?offset=50").text
    assert re.findall(r'<td><a href="/ui/pipelines/(p\d\d)">', rest) == ["p50", "p51"]


def test_the_overview_stream_names_each_log_event_changed_wherever_the_chunks_break() -> None:
    """The overview's stream turns each event of the API's log stream into one ``changed`` event (data:
    the topic) and passes keep-alive comments on, however the API's bytes were cut into chunks; closing
    it closes the API's stream."""
    sent = (
        b": keep-alive\n\n"
        b'id: 7\nevent: jobs.started\ndata: {"id": 7}\n\n'
        b'id: 8\r\nevent: pipelines.stage.done\r\ndata: {"id": 8}\r\n\r\n'
        b"id: 9\nevent: jobs.finished\ndata: {}\n\n"
    )
    want = (
        b": keep-alive\n\n"
        b"event: changed\ndata: jobs.started\n\n"
        b"event: changed\ndata: pipelines.stage.done\n\n"
        b"event: changed\ndata: jobs.finished\n\n"
    )
    closed: list[bool] = []

    async def api_stream(size: int) -> AsyncGenerator[bytes]:
        try:
            for i in range(0, len(sent), size):
                yield sent[i : i + size]
        finally:
            closed.append(True)

    async def relayed(size: int) -> bytes:
        return b"".join([chunk async for chunk in changes(api_stream(size))])

    for size in (1, 2, 3, 7, 16, len(sent)):
        assert asyncio.run(relayed(size)) == want, size

    async def first_only() -> bytes:
        stream = changes(api_stream(5))
        first = await anext(stream)
        await stream.aclose()  # the browser went away
        return first

    closed.clear()
    assert asyncio.run(first_only()) == b": keep-alive\n\n" and closed == [True]
