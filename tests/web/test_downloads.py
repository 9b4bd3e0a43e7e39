"""Downloads through the dashboard stream: the dashboard holds a few of the API's chunks at a time, never
the whole body, and a refusal is still the API's own problem."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from modelyard.web.client import STREAM_CHUNKS, Api, ApiProblem
from tests.web.conftest import api_headers, sign_in, wait_for

CHUNK = b"x" * 65536
CHUNKS = 40  # 2.5 MiB: far more than the dashboard ever holds


class Producer:
    """An API that sends ``CHUNKS`` body chunks, counting how many it has sent and whether it ended."""

    def __init__(self, status: int = 200, body: bytes = b""):
        self.sent = 0
        self.finished = False
        self.status, self.body = status, body
        self.auth = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.auth = dict(scope["headers"])[b"authorization"]
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": [(b"x-a", b"1")]})
            if self.status >= 400:
                await send({"type": "http.response.body", "body": self.body})
                return
            for _ in range(CHUNKS):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
                self.sent += 1
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.finished = True


async def test_a_download_holds_only_a_few_chunks_while_the_reader_is_slow() -> None:
    producer = Producer()
    async with Api(producer, "k-123") as my:
        headers, body = await my.stream("/big", format="csv")
        assert headers["x-a"] == "1" and producer.auth == b"Bearer k-123"
        first = await anext(body)
        assert first == CHUNK
        # the API waits for the reader: at most the held chunks (plus the one being handed over) are sent
        assert producer.sent <= STREAM_CHUNKS + 2 < CHUNKS
        rest = [c async for c in body]
    assert len(rest) == CHUNKS - 1 and producer.sent == CHUNKS


async def test_closing_a_download_early_stops_the_api() -> None:
    producer = Producer()
    async with Api(producer, "k") as my:
        _, body = await my.stream("/big")
        await anext(body)
        await body.aclose()  # type: ignore[attr-defined]
    assert producer.finished and producer.sent < CHUNKS


async def test_a_refused_download_is_the_apis_problem() -> None:
    producer = Producer(404, b'{"detail": "job j does not exist", "code": "not-found"}')
    async with Api(producer, "k") as my:
        with pytest.raises(ApiProblem) as refused:
            await my.stream("/missing")
    assert refused.value.status == 404 and refused.value.detail == "job j does not exist"


def test_job_results_larger_than_the_buffer_download_whole(app_client: TestClient) -> None:
    sign_in(app_client)
    rows = [[5.1 + i % 7, 3.5, 1.4 + i % 3, 0.2] for i in range(6000)]
    resp = app_client.post(
        "/api/v1/jobs", json={"model": "demo-iris", "rows": rows, "chunk_rows": 1000}, headers=api_headers()
    )
    assert resp.status_code == 202, resp.text
    job = resp.json()["id"]
    wait_for(
        lambda: app_client.get(f"/api/v1/jobs/{job}", headers=api_headers()).json()["state"] == "succeeded"
    )
    direct = app_client.get(f"/api/v1/jobs/{job}/results?format=csv", headers=api_headers())
    shown = app_client.get(f"/ui/jobs/{job}/results?format=csv")
    assert shown.status_code == 200 and len(shown.content) > STREAM_CHUNKS * 65536 // 4
    assert shown.content == direct.content
    assert len(shown.text.strip().splitlines()) == 6001
    assert shown.headers["content-disposition"] == f'attachment; filename="{job}.csv"'
    refused = app_client.get("/ui/jobs/nope/results?format=csv")
    assert refused.status_code == 404 and "nope" in refused.text
