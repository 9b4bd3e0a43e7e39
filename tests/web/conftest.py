"""Dashboard fixtures: an app with its in-process worker (so jobs and events really run), a signed-in
browser-like client, and helpers to wait for work through the API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY

DEADLINE_S = 60.0


@pytest.fixture
def ui_settings(tmp_path: Path) -> Settings:
    """The embedded default with a worker, as ``make run`` starts it (SQLite; the dashboard only talks to
    the API, so the database kind does not change what it shows)."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'modelyard.db'}",
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=True,
        demo=True,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def app_client(ui_settings: Settings) -> Iterator[TestClient]:
    """A client with no key of its own: it signs in like a browser (``sign_in``)."""
    with TestClient(create_app(ui_settings), follow_redirects=False) as client:
        yield client


def sign_in(client: TestClient, key: str = ADMIN_KEY) -> None:
    """Sign in through the form; the cookie stays in the client."""
    resp = client.post("/ui/login", data={"key": key, "next": "/ui/"})
    assert resp.status_code == 303, resp.text


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def api_headers(key: str = ADMIN_KEY) -> dict[str, str]:
    """Headers of a direct API call."""
    return {"Authorization": f"Bearer {key}"}


def wait_for(check: Callable[[], Any]) -> Any:
    """Call ``check`` until it returns something truthy (the worker runs in this process's threads)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the work did not finish in time")
