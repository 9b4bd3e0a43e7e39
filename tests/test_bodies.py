"""JSON bodies: strict (NaN and Infinity are not JSON) on every route, parsed off the event loop."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelyard.bodies import strict_loads
from modelyard.errors import BadRequest
from tests.conftest import sqlite_only

pytestmark = sqlite_only  # JSON parsing happens before any query

NOT_JSON = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[1, NaN]", b'{"a": -Infinity}', b"{"]


@pytest.mark.parametrize("body", NOT_JSON)
def test_strict_loads_refuses_what_is_not_json(body: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        strict_loads(body)


def test_strict_loads_reads_json() -> None:
    assert strict_loads(b'{"a": [1, 2.5e300, null, "NaN"]}') == {"a": [1, 2.5e300, None, "NaN"]}


@pytest.mark.parametrize(
    "path", ["/api/v1/keys", "/api/v1/schedules", "/api/v1/jobs", "/api/v1/pipelines/p/events"]
)
def test_json_routes_answer_400_to_non_finite_numbers(client: TestClient, path: str) -> None:
    resp = client.post(path, content=b'{"name": "x", "n": NaN}', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"ready": "yes"}', b'{"ready": NaN}'])
def test_v2_repository_index_answers_400_to_a_bad_body(client: TestClient, body: bytes) -> None:
    resp = client.post("/v2/repository/index", content=body)
    assert resp.status_code == 400, resp.text
    assert set(resp.json()) == {"error"}


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (rb'{"a": "\u0000"}', True),
        (rb'{"a\u0000": 1}', True),
        (rb'["x\\\u0000"]', True),  # an escaped backslash, then a NUL
        (rb'["x\\u0000"]', False),  # the six characters \u0000, not a NUL
        (rb'["\u0001"]', False),
    ],
)
def test_strict_loads_refuses_text_holding_a_nul_character(body: bytes, refused: bool) -> None:
    if refused:
        with pytest.raises(BadRequest, match="NUL"):
            strict_loads(body)
    else:
        strict_loads(body)


@pytest.mark.parametrize("path", ["/api/v1/keys", "/api/v1/pipelines/p/events"])
def test_json_routes_answer_400_to_text_holding_a_nul_character(client: TestClient, path: str) -> None:
    resp = client.post(path, content=rb'{"name": "a\u0000", "scopes": ["read"], "source": "x.png"}')
    assert resp.status_code == 400, resp.text
    assert "NUL" in resp.json()["detail"]
