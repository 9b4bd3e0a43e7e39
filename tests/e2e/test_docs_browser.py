"""``/docs`` and ``/redoc`` render in a real browser (Debian's chromium, driven by Playwright) with no
request leaving the server: their assets are served by modelyard itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import LiveServer
from tests.e2e.browser import CHROMIUM, chromium

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.lock")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="chromium is installed by scripts/apt-packages.sh (make test)"
)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# What the walk down Swagger UI's operations reads and waits for. Its rows are tag headers and operations;
# a long list is virtualized in `.operations-virtual__list`, whose bottom padding stands for the rows below.
ROWS = ".opblock-tag, .opblock"
VIRTUAL = "document.querySelector('.operations-virtual__list')"
END_SHOWN = f"(() => {VIRTUAL} === null || {VIRTUAL}.style.paddingBottom === '0px')"
AT_TOP = f"() => window.scrollY === 0 && ({VIRTUAL} === null || {VIRTUAL}.querySelector(\"[data-index='0']\") !== null)"
OPENED = "tag => document.querySelector(`[id='${tag}'][data-is-open='false']`) === null"
MOVED_ON = f"last => [...document.querySelectorAll('{ROWS}')].at(-1)?.id !== last || {END_SHOWN}()"


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings)) as live:
        yield live


def _visit(browser: Any, url: str, ready: str) -> tuple[Any, list[str]]:
    """Open ``url`` until ``ready`` shows; returns the page and the requests that left the browser for
    another host (a request the page's Content-Security-Policy blocks never leaves it)."""
    page = browser.new_page()
    requested: list[str] = []
    blocked: set[str] = set()
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: request.failure == "csp" and blocked.add(request.url))
    page.goto(url)
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    outside = [
        u
        for u in requested
        if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).hostname != "127.0.0.1"
    ]
    return page, [u for u in outside if u not in blocked]


def _operation_ids(spec: dict[str, Any]) -> set[str]:
    """The DOM id Swagger UI gives each operation of ``spec``, once per tag it is listed under."""
    return {
        f"operations-{tag.replace(' ', '_')}-{operation['operationId']}"
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in METHODS
        for tag in operation.get("tags", ["default"])
    }


def _rendered_operations(page: Any) -> set[str]:
    """The ids of the operations Swagger UI renders, seen by scrolling it from top to bottom with every
    tag open. From 150 tags and operations on, Swagger UI virtualizes the list: only the rows near the
    viewport are in the DOM, so one look at the page sees a screenful."""
    rendered: set[str] = set()
    while _walk_down(page, rendered):
        pass
    return rendered


def _walk_down(page: Any, rendered: set[str]) -> bool:
    """Scroll from the top to the bottom adding the operations on the way to ``rendered``; True if it
    had to open a collapsed tag, which moves everything after it, so the walk starts again."""
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function(AT_TOP)
    while True:
        at_end = page.evaluate(END_SHOWN)
        collapsed = page.locator(".opblock-tag[data-is-open='false']")
        if collapsed.count():
            tag = collapsed.first.get_attribute("id")
            collapsed.first.click()
            page.wait_for_function(OPENED, arg=tag)
            return True
        rows = page.eval_on_selector_all(ROWS, "rows => rows.map(row => [row.id, row.matches('.opblock')])")
        rendered.update(row for row, is_operation in rows if is_operation)
        if at_end or not rows:
            return False
        last = rows[-1][0]
        page.eval_on_selector(f"[id='{last}']", "row => row.scrollIntoView({block: 'start'})")
        page.wait_for_function(MOVED_ON, arg=last)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_swagger_ui_renders_every_operation_offline(browser: Any, server: LiveServer) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    expected = _operation_ids(spec)
    page, left = _visit(browser, server.url + "/docs", ".opblock-tag")
    rendered = _rendered_operations(page)
    assert len(rendered) == len(expected)
    assert rendered == expected
    assert left == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_redoc_renders_the_operations_offline(browser: Any, server: LiveServer) -> None:
    page, left = _visit(browser, server.url + "/redoc", "[data-section-id^='tag/']")
    assert page.locator("[data-section-id^='operation/']").count() > 10
    assert left == []
