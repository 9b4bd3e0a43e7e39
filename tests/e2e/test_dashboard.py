"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real
``modelyard serve`` process with its worker: every page loads with data and no console error, and the
key flows work end to end. Screenshots of each page go to ``tests/artifacts/dashboard/``."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.e2e.a11y import audit
from tests.e2e.browser import chromium
from tests.e2e.serve import modelyard_serve

KEY = "dashboard-admin-key-0123"
PIPELINE = """
name: images
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  shape: {type: inferrer, inferrer: aspect_ratio}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``modelyard serve --demo`` with its in-process worker, as ``make run`` starts it."""
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(image, "PNG")
    (data / "incoming" / "red.png").write_bytes(image.getvalue())
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(data),
        "MODELYARD_ADMIN_KEY": KEY,
        # a failing chunk becomes a dead letter after two quick attempts, not three slow ones
        "MODELYARD_JOB_MAX_ATTEMPTS": "2",
        "MODELYARD_JOB_RETRY_SECONDS": "0.05",
    }
    with modelyard_serve(env, tmp_path / "server.log") as (url, _):
        yield url


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium (Playwright never downloads a browser here)."""
    with chromium() as found:
        yield found


def _open(browser: Browser, url: str, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: (
            errors.append(f"outside request: {r.url}") if not r.url.startswith((url, "data:")) else None
        ),
    )
    page.goto(url + "/")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def _shot(page: Page, name: str, actions: tuple[str, ...] = ()) -> None:
    """The page's screenshot, and every accessibility check of ``tests/e2e/a11y.py`` passed."""
    assert audit(page, name, actions) == []


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    """The server's API with the admin key, for what the test sets up and checks behind the pages."""
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        yield client


def _wait_job(api: httpx.Client, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while (found := api.get(f"/api/v1/jobs/{job_id}").json())["state"] != state:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)  # polling the API for the worker's progress


def test_every_page_loads_and_the_key_flows_work(
    server: str, browser: Browser, api: httpx.Client, model_dir: Path, tmp_path: Path
) -> None:
    errors: list[str] = []
    page = _open(browser, server, errors)
    _shot(page, "overview", ("Models", "Queues", "Sign out"))

    # the overview redraws on the log's job events (its timed redraw is every 30 s): a job's end shows
    jobs_row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="jobs", exact=True))
    done = int(jobs_row.get_by_role("cell").nth(3).inner_text())
    ran = api.post("/api/v1/jobs", json={"model": "demo-iris", "version": 1, "rows": [[5.1, 3.5, 1.4, 0.2]]})
    assert ran.status_code == 202, ran.text
    expect(jobs_row.get_by_role("cell").nth(3)).to_have_text(str(done + 1), timeout=10_000)

    # a model: upload a new version with the progress bar, then predict in the try-it form
    page.get_by_role("link", name="Models").click()
    page.get_by_role("link", name="demo-iris").click()
    page.get_by_label("ONNX file").set_input_files(str(model_dir / "logreg.onnx"))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("v2 ·")).to_be_visible(timeout=30_000)
    versions = api.get("/api/v1/models/demo-iris").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    _shot(page, "model")

    # a dead letter: v2's stored file is damaged, so its job's chunk fails every attempt; the queues page
    # shows it with its traceback, and once the file is repaired, re-submitting it finishes the job
    (stored,) = (tmp_path / "data").glob("**/models/demo-iris/2/*.onnx")
    good = stored.read_bytes()
    stored.write_bytes(b"not an onnx model")
    doomed = api.post("/api/v1/jobs", json={"model": "demo-iris", "version": 2, "rows": [[0.5] * 20]})
    assert doomed.status_code == 202, doomed.text
    _wait_job(api, doomed.json()["id"], "failed")
    page.get_by_role("link", name="Queues").click()
    expect(page.get_by_role("heading", name="Dead letters (1)")).to_be_visible()
    letter = page.locator("details", has_text=f"job {doomed.json()['id'][:8]}")
    letter.locator("summary").click()
    expect(letter.locator("pre")).to_contain_text("Traceback (most recent call last)")
    expect(letter.locator("pre")).to_contain_text("onnxruntime")
    _shot(page, "dead-letter", ("Re-submit chunk 0",))
    stored.write_bytes(good)
    letter.get_by_role("button", name="Re-submit chunk 0").click()
    expect(page.locator("#job-state .badge")).to_have_text("succeeded", timeout=60_000)
    assert api.get("/api/v1/queues/dead-letters").json()["total"] == 0

    # a job: submit 20,000 rows and watch the progress bar reach 100%
    rows = np.random.default_rng(0).uniform(0, 8, (20_000, 4)).round(2).tolist()
    job = api.post("/api/v1/jobs", json={"model": "demo-iris", "version": 1, "rows": rows}).json()
    page.goto(f"{server}/ui/jobs/{job['id']}")
    expect(page.locator("#job-state .badge")).to_have_text("succeeded", timeout=60_000)
    expect(page.get_by_role("progressbar", name="job progress")).to_have_attribute("aria-valuenow", "100.0")
    _shot(page, "job")

    # a pipeline: events submitted from the page, the event page shows the raw image and outputs
    assert api.post(
        "/api/v1/pipelines", content=PIPELINE, headers={"Content-Type": "application/yaml"}
    ).status_code in (200, 201)
    page.goto(f"{server}/ui/pipelines/images")
    page.get_by_label("Or many at once").fill("red incoming/red.png\ngone incoming/nope.png")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_contain_text("2 event(s) created")
    deadline = time.monotonic() + 60
    while api.get("/api/v1/pipelines/images/queues").json()["events"]["complete"] < 1:
        assert time.monotonic() < deadline, "the event did not complete"
        time.sleep(0.1)  # polling the API for the worker's progress
    page.reload()
    _shot(page, "pipeline")
    page.get_by_role("link", name="red").click()
    expect(page.get_by_role("img", name="output of stage raw")).to_be_visible()
    assert page.locator("img.output").evaluate("img => img.naturalWidth") == 64
    expect(page.get_by_text("#c81e5a").first).to_be_visible()
    _shot(page, "event")
    # a stage's logs, and a page for something that does not exist
    page.goto(page.url + "/stages/palette/logs")
    expect(page.get_by_role("heading", name="Logs of stage palette")).to_be_visible()
    _shot(page, "stage-logs", ("Back to the event",))
    page.goto(f"{server}/ui/jobs/no-such-job")
    expect(page.get_by_role("alert")).to_contain_text("does not exist")
    _shot(page, "error", ("Overview",))
    errors.remove(next(e for e in errors if "404" in e))  # the browser reports the page's 404 status

    for name, path in (
        ("models", "/ui/models"),
        ("jobs", "/ui/jobs"),
        ("queues", "/ui/queues"),
        ("pipelines", "/ui/pipelines"),
    ):
        page.goto(server + path)
        expect(page.locator("h1")).to_be_visible()
        assert page.title().endswith("modelyard")
        _shot(page, name)
    assert errors == []
