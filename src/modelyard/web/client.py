"""The dashboard's API caller: requests to the app's own ``/api/v1`` routes, in process, as the viewer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.types import ASGIApp, Message

# Body chunks a streamed download holds between the API and the browser: the API waits while it is full,
# so a download of any size takes this many chunks of memory (the API's own chunks, ~64 KiB each).
STREAM_CHUNKS = 4


class ApiProblem(Exception):
    """The API refused a request: its status and problem+json body, shown to the user as they are."""

    def __init__(self, status: int, problem: dict[str, Any]):
        super().__init__(problem.get("detail") or f"HTTP {status}")
        self.status = status
        self.problem = problem

    @property
    def detail(self) -> str:
        """The human sentence of the problem (plus the offending field when there is one)."""
        field = self.problem.get("field")
        detail = str(self.problem.get("detail") or self.problem.get("error") or f"HTTP {self.status}")
        return f"{detail} (field: {field})" if field and field not in detail else detail


class Api:
    """Calls the API in process with the viewer's key: JSON in and out, problems raised as ``ApiProblem``."""

    def __init__(self, app: ASGIApp, key: str):
        self._app, self._key = app, key
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://modelyard.internal",
            headers={"Authorization": f"Bearer {key}"},
            trust_env=False,
            timeout=60.0,
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response of a request; a 4xx/5xx is raised as ``ApiProblem``."""
        params = kwargs.pop("params", None)
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v not in (None, "", [])}
        resp = await self._client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text[:500] or resp.reason_phrase}
            raise ApiProblem(resp.status_code, body if isinstance(body, dict) else {"detail": str(body)})
        return resp

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with query ``params``; the decoded JSON."""
        return (await self.request("GET", path, params=params)).json()

    async def post(self, path: str, **kwargs: Any) -> Any:
        """POST to ``path`` (``json=``, ``files=``, ``content=``...); the decoded JSON, or None when empty."""
        resp = await self.request("POST", path, **kwargs)
        return resp.json() if resp.content else None

    async def stream(self, path: str, **params: Any) -> tuple[dict[str, str], AsyncGenerator[bytes]]:
        """GET ``path`` and stream its body: the response headers and the body's chunks as the API sends
        them, never more than ``STREAM_CHUNKS`` held at once (``httpx``'s in-process transport would
        gather the whole body first). A 4xx/5xx is raised as ``ApiProblem`` before any byte is passed on.
        Iterate the body to the end or close it: closing stops the API's side too."""
        query = urlencode({k: v for k, v in params.items() if v not in (None, "", [])}, doseq=True)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "server": ("modelyard.internal", 80),
            "client": ("127.0.0.1", 0),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"modelyard.internal"), (b"authorization", f"Bearer {self._key}".encode())],
        }
        # the app's messages, then an exception if it failed, then None at its end
        sent: asyncio.Queue[Message | Exception | None] = asyncio.Queue(maxsize=STREAM_CHUNKS)
        gone = asyncio.Event()
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def run() -> None:
            try:
                await self._app(scope, receive, sent.put)
            except asyncio.CancelledError:
                raise  # stopped by the reader, who wants nothing more
            except Exception as exc:  # handed to the reader, which raises it
                await sent.put(exc)
            await sent.put(None)

        task = asyncio.create_task(run())

        async def stop() -> None:
            gone.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        start = await sent.get()
        if not isinstance(start, dict) or start["type"] != "http.response.start":
            await stop()
            raise ApiProblem(500, {"detail": f"the API failed before it answered: {start!r}"})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
        status = int(start["status"])

        async def body() -> AsyncGenerator[bytes]:
            try:
                while (message := await sent.get()) is not None:
                    if isinstance(message, Exception):
                        raise message  # the download breaks off rather than looking complete
                    if message["type"] != "http.response.body":
                        continue
                    if chunk := message.get("body", b""):
                        yield chunk
                    if not message.get("more_body", False):
                        return
            finally:
                await stop()

        if status >= 400:
            text = b"".join([c async for c in body()])
            try:
                problem = httpx.Response(status, content=text).json()
            except ValueError:
                problem = {"detail": text[:500].decode(errors="replace") or f"HTTP {status}"}
            raise ApiProblem(status, problem if isinstance(problem, dict) else {"detail": str(problem)})
        return headers, body()
