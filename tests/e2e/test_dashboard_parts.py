"""The dashboard's catalog, geo and notification pages in a real browser (Debian's chromium driven by
Playwright) against a real ``modelyard serve`` process with its worker: search a collection by text,
filter and colour, open a record, "more like this"; a command model's run drawn on its map with its logs;
a model's topic with its subscription and deliveries; try-it on an uploaded image; an inferrer run; a
tissue scan's mask overlay on its event's page. Every page visited, the older parts' too, passes the
accessibility checks of ``tests/e2e/a11y.py`` and shows no console error; screenshots go to
``tests/artifacts/dashboard/``."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.analysis.tissue import disc_centres, tissue, write_ome
from tests.e2e.a11y import audit, problems, tab_through
from tests.e2e.browser import chromium
from tests.e2e.serve import modelyard_serve
from tests.geo.conftest import s2_item, square
from tests.geo.runs_helpers import COMMAND
from tests.notify.conftest import Receiver
from tests.onnx_models import image_embedder

KEY = "dashboard-parts-admin-key-0123"
LOOKS = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  feat: {type: inferrer, inferrer: features, params: {model: embedder, resize: [8, 8], mean: 0, std: 1}}
"""
# solid squares; under the embedder (channel means times a seeded matrix) crimson is red's nearest
COLOURS = {
    "red": ((220, 20, 30), 1873),
    "crimson": ((180, 10, 50), 1910),
    "blue": ((20, 30, 220), 1899),
    "navy": ((10, 20, 120), 1921),
    "green": ((20, 200, 40), 1888),
}
C = "/api/v1/collections/works"


@dataclass
class Site:
    """The server's URL, its API with the admin key, and its data folder."""

    url: str
    api: httpx.Client
    data: Path
    errors: list[str] = field(default_factory=list)


def _until(found: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll ``found`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling the API for the worker's progress
    return value


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``modelyard serve --demo`` with its in-process worker, local webhook URLs allowed."""
    tmp = tmp_path_factory.mktemp("parts")
    data = tmp / "data"
    data.mkdir()
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(data),
        "MODELYARD_ADMIN_KEY": KEY,
        "MODELYARD_ALLOW_PRIVATE_URLS": "true",
        "MODELYARD_NOTIFY_POLL_SECONDS": "0.1",
    }
    with (
        modelyard_serve(env, tmp / "server.log") as (url, _),
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as api,
    ):
        yield Site(url, api, data)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium (Playwright never downloads a browser here)."""
    with chromium() as found:
        yield found


@pytest.fixture
def page(site: Site, browser: Browser) -> Iterator[Page]:
    """A signed-in page that records console errors, page errors and requests leaving the server."""
    errors: list[str] = []
    found = browser.new_page(viewport={"width": 1280, "height": 900})
    found.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    found.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    found.on(
        "request",
        lambda r: (
            errors.append(f"outside request: {r.url}") if not r.url.startswith((site.url, "data:")) else None
        ),
    )
    found.goto(site.url + "/")
    assert audit(found, "sign-in", ["Sign in"]) == []
    found.get_by_label("API key").fill(KEY)
    found.get_by_role("button", name="Sign in").click()
    expect(found.get_by_role("heading", name="Overview")).to_be_visible()
    yield found
    found.close()
    assert errors == []


def _png(rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), rgb).save(out, format="PNG")
    return out.getvalue()


def _collection(site: Site) -> None:
    """Collection ``works`` bound to ``looks`` (palette and the ``embedder`` model's features), five
    images inferred by the worker."""
    if site.api.get(C).status_code == 200:
        return
    model = image_embedder(site.data / "embedder.onnx")
    made = site.api.post(
        "/api/v1/models/embedder/versions",
        params={"create": "true"},
        content=model.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert made.status_code == 201, made.text
    yaml = {"Content-Type": "application/yaml"}
    assert site.api.post("/api/v1/pipelines", content=LOOKS, headers=yaml).status_code in (200, 201)
    made = site.api.post("/api/v1/collections", json={"name": "works", "pipelines": ["looks"]})
    assert made.status_code == 201, made.text
    (site.data / "img").mkdir()
    for name, (rgb, year) in COLOURS.items():
        (site.data / "img" / f"{name}.png").write_bytes(_png(rgb))
        body = {
            "id": name,
            "title": f"{name.title()} square",
            "description": f"a flat {name} square",
            "source": f"img/{name}.png",
            "attributes": {"year": year},
        }
        assert site.api.post(f"{C}/records", json=body).status_code == 201

    def inferred() -> bool:
        records = [site.api.get(f"{C}/records/{name}").json() for name in COLOURS]
        return all({"palette", "embedder"} <= set(r["inferred"]) for r in records)

    _until(inferred, "the worker to infer every record")


def _cards(page: Page) -> list[str]:
    """The record ids of the result cards, in order."""
    return page.locator("li.card > span.muted:not(.why)").all_inner_texts()


def test_catalog_search_filter_colour_record_and_more_like_this(site: Site, page: Page) -> None:
    _collection(site)
    page.get_by_role("link", name="Catalog").click()
    expect(page.get_by_role("link", name="works")).to_be_visible()
    assert audit(page, "collections") == []
    page.get_by_role("link", name="works").click()
    expect(page.get_by_text("5 found")).to_be_visible()
    page.wait_for_function(  # every thumbnail decoded (they load lazily)
        "() => [...document.querySelectorAll('li.card img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    assert audit(page, "collection", ["Search", "Make current (re-infer)"]) == []

    # text: stemmed search over title and description
    page.get_by_label("text").fill("navy")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 found")).to_be_visible()
    assert _cards(page) == ["navy"]

    # a filter on an attribute, with the text cleared
    page.get_by_label("text").fill("")
    page.get_by_label("filter").fill('{"field": "attributes.year", "op": "lt", "value": 1890}')
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("2 found")).to_be_visible()
    assert sorted(_cards(page)) == ["green", "red"]

    # a colour from the picker: the nearest palette first
    page.get_by_label("filter").fill("")
    page.get_by_label("pick a colour").fill("#1020d0")
    expect(page.get_by_label("colour", exact=True)).to_have_value("#1020d0")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("li.card").first).to_contain_text("Blue square")
    assert _cards(page)[:2] == ["blue", "navy"]
    assert audit(page, "catalog-colour", ["Search"]) == []

    # a record: its image, every inference with its version, and "more like this" by its embedding
    page.get_by_role("link", name="Red square").first.click()
    expect(page.get_by_role("heading", name="Red square")).to_be_visible()
    expect(page.get_by_role("img", name="Red square")).to_be_visible()
    inferences = page.locator("table tbody tr")
    expect(inferences).to_have_count(2)
    expect(inferences.filter(has_text="palette")).to_contain_text("current")
    expect(inferences.filter(has_text="embedder")).to_contain_text("vector of 16")
    expect(page.locator(".swatch[title='#dc141e']")).to_have_count(1)
    assert audit(page, "record", ["more like this by embedder"]) == []
    page.get_by_role("link", name="more like this by embedder").click()
    expect(page.get_by_text("4 found")).to_be_visible()  # the record itself excluded
    assert _cards(page)[0] == "crimson"
    assert audit(page, "more-like-this", ["Search"]) == []


def _run(site: Site, receiver: Receiver) -> int:
    """A command model ``ships``, a webhook on its run events, an AOI; an eo item posted; the run's id
    once it succeeded."""
    found = site.api.get("/api/v1/runs", params={"model": "ships", "state": "succeeded"}).json()
    if found["items"]:
        return int(found["items"][0]["id"])
    spec = {"argv": [sys.executable, str(COMMAND)], "timeout_seconds": 60}
    made = site.api.post("/api/v1/models", json={"name": "ships", "kind": "command", "command": spec})
    assert made.status_code == 201, made.text
    hook = {"kind": "webhook", "url": receiver.url, "events": ["run.succeeded"]}
    assert site.api.post("/api/v1/topics/ships/subscriptions", json=hook).status_code == 201
    aoi = {"name": "harbour", "geometry": square(5.2, 45.2, 0.5), "target_resolution": 10, "model": "ships"}
    assert site.api.post("/api/v1/aois", json=aoi).status_code == 201
    posted = site.api.post("/api/v1/scenes", json=s2_item())
    assert posted.status_code == 201, posted.text
    [run_id] = [m["run_id"] for s in posted.json()["scenes"] for m in s["matches"]]

    def finished() -> str | None:
        state: str = site.api.get(f"/api/v1/runs/{run_id}").json()["state"]
        return state if state in ("succeeded", "failed", "cancelled") else None

    assert _until(finished, "the run to finish") == "succeeded"
    return int(run_id)


def test_a_run_is_drawn_on_its_map_with_its_logs(site: Site, page: Page, receiver: Receiver) -> None:
    run_id = _run(site, receiver)
    page.get_by_role("link", name="AOIs").click()
    expect(page.locator("svg.geo-map polygon.aoi")).to_have_count(1)
    expect(page.locator("svg.geo-map polygon.scene")).to_have_count(1)
    assert audit(page, "aois") == []
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("link", name=str(run_id), exact=True)).to_be_visible()
    assert audit(page, "runs", ["Filter"]) == []
    page.get_by_role("link", name=str(run_id), exact=True).click()
    expect(page.get_by_role("heading", name=f"Run {run_id}")).to_contain_text("succeeded")

    # the map: the AOI's outline, the scene's footprint and the four label polygons the command reported
    # (3 ships west to east, then a wake, near the south-west corner of the scene, outside the AOI)
    drawn = page.get_by_role("img", name="the run:")
    expect(drawn.locator("polygon.aoi")).to_have_count(1)
    expect(drawn.locator("polygon.scene")).to_have_count(1)
    expect(drawn.locator("polygon.label")).to_have_count(4)
    assert drawn.locator("polygon.label title").all_text_contents() == ["ship", "ship", "ship", "wake"]
    scene, aoi = drawn.locator("polygon.scene").bounding_box(), drawn.locator("polygon.aoi").bounding_box()
    labels = [label.bounding_box() for label in drawn.locator("polygon.label").all()]
    assert scene and aoi and all(labels)
    for box in labels:
        assert box and box["width"] > 0 and box["height"] > 0
        assert scene["x"] <= box["x"] and box["x"] + box["width"] <= aoi["x"]  # west of the AOI
        assert aoi["y"] + aoi["height"] <= box["y"] <= scene["y"] + scene["height"]  # south of it
    xs = [box["x"] for box in labels if box]
    assert xs == sorted(xs)
    zoomed = page.get_by_role("img", name="its labels:")
    expect(zoomed.locator("polygon.label")).to_have_count(4)
    expect(zoomed.locator("polygon.aoi, polygon.scene")).to_have_count(0)
    ships = [label.bounding_box() for label in zoomed.locator("polygon.label").all()]
    assert all(box and box["width"] > 10 for box in ships)  # visible, not specks
    prediction = page.get_by_role("region", name="Prediction")
    expect(prediction).to_contain_text("ships and wakes · 4 features")
    expect(prediction.locator("tbody tr")).to_have_count(2)
    logs = page.get_by_role("region", name="Logs")
    expect(logs).to_contain_text("item S2B_31TFJ_20260601_0_L2A")
    expect(logs).to_contain_text("first report: 201")
    assert audit(page, "run") == []


def test_a_topic_lists_its_subscription_and_deliveries(site: Site, page: Page, receiver: Receiver) -> None:
    run_id = _run(site, receiver)
    [sent] = _until(lambda: [r.json() for r in receiver.received()], "the webhook delivery")
    assert (sent["type"], sent["model"], sent["data"]["run_id"]) == ("run.succeeded", "ships", run_id), sent
    page.get_by_role("link", name="Models").click()
    page.get_by_role("link", name="ships").click()
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="ships · notifications")).to_be_visible()
    subscriptions = page.get_by_role("region", name="Subscriptions (1)")
    expect(subscriptions).to_contain_text(receiver.url)
    delivery = subscriptions.locator("tbody tr").first
    expect(delivery.locator("td").first).to_have_text(sent["id"])
    expect(delivery.locator("td").nth(1)).to_have_text("run.succeeded")
    expect(delivery.locator(".badge")).to_have_text("delivered")
    expect(delivery.locator("td").nth(4)).to_have_text("200")
    assert audit(page, "topic") == []


TISSUE = """
name: tissue
raw: bytes
stages:
  pre: {type: tissue_preprocess, channels: [DAPI, CD3, CD20], params: {background_radius: 15}}
  seg: {type: tissue_segment, inputs: [pre], params: {channel: DAPI, diameter: 12, tile: 96}}
  overlay: {type: tissue_overlay, inputs: [pre, seg], params: {channels: [CD3, CD20, DAPI]}}
"""


def _completed(site: Site, pipeline: str, name: str) -> str:
    """The id of event ``name`` of ``pipeline`` once it completed."""

    def complete() -> str | None:
        found = site.api.get(f"/api/v1/pipelines/{pipeline}/events/{name}").json()
        if found["state"] in ("failed", "cancelled"):
            stages = site.api.get(f"/api/v1/events/{found['id']}").json()["stages"]
            raise AssertionError([(r["stage"], r.get("error")) for r in stages])
        return str(found["id"]) if found["state"] == "complete" else None

    return str(_until(complete, f"event {name} of {pipeline} to complete", timeout=180))


def test_a_tissue_scans_mask_overlay_is_drawn_on_its_event_page(site: Site, page: Page) -> None:
    (site.data / "tissue").mkdir(exist_ok=True)
    scan = tissue(160, 200, disc_centres(160, 200, 6, 60, seed=3), 6)
    write_ome(site.data / "tissue" / "scan.ome.tif", scan, ["DAPI", "CD3", "CD20"])
    yaml = {"Content-Type": "application/yaml"}
    assert site.api.post("/api/v1/pipelines", content=TISSUE, headers=yaml).status_code in (200, 201)
    made = site.api.post(
        "/api/v1/pipelines/tissue/events", json={"name": "scan", "source": "tissue/scan.ome.tif"}
    )
    assert made.status_code in (200, 201, 202), made.text
    page.goto(f"{site.url}/ui/events/{_completed(site, 'tissue', 'scan')}")
    picture = page.get_by_role("img", name="output of stage overlay")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.naturalWidth") == 200  # the whole scan, outlines drawn on it
    expect(page.get_by_text("shape [160, 200]")).to_be_visible()  # the label mask, summarised
    assert audit(page, "checked-tissue-event") == []


def test_the_older_parts_pages_pass_the_same_checks(site: Site, page: Page) -> None:
    _collection(site)  # its pipeline's events give the pipeline and event pages their data
    failures: list[str] = []
    for name, path, actions in (
        ("overview", "/ui/", ["Models", "Sign out"]),
        ("models", "/ui/models", []),
        ("model", "/ui/models/demo-iris", ["Upload"]),
        ("jobs", "/ui/jobs", []),
        ("queues", "/ui/queues", []),
        ("scenes", "/ui/scenes", []),
        ("pipelines", "/ui/pipelines", []),
        ("inferrers", "/ui/inferrers", ["Run palette"]),
        ("pipeline", "/ui/pipelines/looks", ["Submit"]),  # last: its events are opened next
    ):
        page.goto(site.url + path)
        expect(page.locator("h1")).to_be_visible()
        failures += audit(page, f"checked-{name}", actions)
    page.get_by_role("link", name="catalog:works/red@").first.click()
    expect(page.get_by_role("img", name="output of stage raw")).to_be_visible()
    failures += audit(page, "checked-event")

    # a model's try-it answer, and a finished job's page
    page.goto(site.url + "/ui/models/demo-iris")
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#outputs")).to_contain_text("probabilities")
    failures += audit(page, "checked-try-it", ["Predict"])
    # an inferrer run on an uploaded image: its colours as swatches
    page.goto(site.url + "/ui/inferrers")
    page.get_by_label("File for palette").set_input_files(str(site.data / "img" / "red.png"))
    page.get_by_role("button", name="Run palette").click()
    expect(page.locator("#inferred")).to_contain_text("Output on red.png")
    expect(page.locator("#inferred .swatch").first).to_be_visible()
    failures += audit(page, "checked-inferrer", ["Run palette"])
    # the embedder takes an image: predict on an uploaded one
    (site.data / "try.png").write_bytes(_png(COLOURS["navy"][0]))
    page.goto(site.url + "/ui/models/embedder")
    page.get_by_label("Or an image").set_input_files(str(site.data / "try.png"))
    page.get_by_role("button", name="Predict on the image").click()
    expect(page.locator("#outputs")).to_contain_text("embedding")
    expect(page.get_by_text("Predicted on try.png")).to_be_visible()
    failures += audit(page, "checked-try-image", ["Predict on the image"])
    job = site.api.post("/api/v1/jobs", json={"model": "demo-iris", "rows": [[5.1, 3.5, 1.4, 0.2]] * 50})
    assert job.status_code == 202, job.text
    page.goto(f"{site.url}/ui/jobs/{job.json()['id']}")
    expect(page.locator("#job-state .badge")).to_have_text("succeeded", timeout=60_000)
    failures += audit(page, "checked-job")
    assert failures == []


def test_the_checks_find_what_they_look_for(browser: Browser) -> None:
    """On a page made to fail each check: no title, two h1, an unlabelled input, an image without alt, an
    empty button, grey text on white, and a first Tab stop that is no link or button."""
    page = browser.new_page()
    page.set_content(
        '<body style="background: #fff"><h1>a</h1><h1>b</h1><input name="q"><img src="data:,">'
        '<button style="color: #fff; background: #0a58ca"></button>'
        '<p style="color: #999">faint</p><a href="#x">go</a></body>'
    )
    found = [p.split(" ", 2)[:2] for p in problems(page)]
    assert found == [
        ["no", "<title>"],
        ["2", "<h1>"],
        ["unlabelled", "control"],
        ["image", "without"],
        ["unnamed", "<button"],
        ["contrast", "2.85"],
    ]
    assert tab_through(page, ["go", "away"]) == [
        "the first Tab stop is <input>, not a link or button",
        "Tab never reaches 'away'",
    ]
    page.close()
