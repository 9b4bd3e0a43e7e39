"""Request body limits, enforced while the body streams in (pure ASGI, in front of every route).

Each request is put in one class by its method and path, and the class's limit comes from the settings:

- ``spec``: ``POST /api/v1/pipelines`` (a pipeline spec): ``pipeline_spec_max_bytes``;
- ``model``: model version uploads, which stream to disk: ``max_upload_bytes``;
- ``batch``: ``POST /api/v1/jobs/upload``: ``max_batch_file_bytes``;
- ``image``: ``POST /api/v1/inferrers/{name}``: ``fetch_max_bytes``;
- ``tensor``: V2 ``infer``, which may carry binary tensors: ``max_request_bytes`` (its JSON is then held to
  ``max_json_body_bytes``);
- ``json``: everything else, REST ``predict`` included: ``max_json_body_bytes``.

Uploads carry a multipart envelope around the file, so their classes allow ``uploads.FIELD_LIMIT`` more
than the file cap (the upload receiver still holds the file itself to the cap). A request whose
``Content-Length`` is over its limit is answered 413 before any of the body is read; a body that streams
past it is answered 413 the moment it does, and the rest is never read. The prediction fast path answers
its routes before this middleware and applies the same limits itself.

A path or query holding a NUL character is answered 400 here too: no name or id has one, and PostgreSQL
cannot even compare text with one (it would be a 500 on every route that looks a name up).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.errors import BadRequest, ModelyardError, PayloadTooLarge, problem
from modelyard.settings import Settings
from modelyard.uploads import FIELD_LIMIT

# (method, path pattern, class); the first match wins, anything else is ``json``
CLASSES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/v1/pipelines/?$"), "spec"),
    ("POST", re.compile(r"^/api/v1/models/[^/]+/versions/?$"), "model"),
    ("POST", re.compile(r"^/api/v1/jobs/upload/?$"), "batch"),
    ("POST", re.compile(r"^/api/v1/inferrers/[^/]+/?$"), "image"),
    ("POST", re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$"), "tensor"),
]


def body_limits(settings: Settings) -> dict[str, int]:
    """The byte limit of each request class under ``settings``."""
    return {
        "spec": settings.pipeline_spec_max_bytes,
        "model": settings.max_upload_bytes + FIELD_LIMIT,
        "batch": settings.max_batch_file_bytes + FIELD_LIMIT,
        "image": settings.fetch_max_bytes + FIELD_LIMIT,
        "tensor": settings.max_request_bytes,
        "json": settings.max_json_body_bytes,
    }


def request_class(method: str, path: str) -> str:
    """The class of a request, which picks its body limit."""
    for want, pattern, name in CLASSES:
        if method == want and pattern.match(path):
            return name
    return "json"


class _TooLarge(BaseException):
    """Raised inside ``receive`` when the streamed body passes the limit. A ``BaseException``, so that no
    route's or framework's ``except Exception`` turns it into a 400 or a 500 on its way out to here."""


class BodyLimitMiddleware:
    """Answers 413 as soon as a request body is known to be over its class's limit."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.limits = body_limits(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\0" in scope["path"] or b"%00" in scope["query_string"]:
            await _answer(
                scope, send, BadRequest("the URL holds a NUL character (%00), which no name or id has")
            )
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limits[request_class(scope["method"], scope["path"])]
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _refuse(scope, send, f"request body of {int(value)} bytes", limit)
                    return
                break
        started = False
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:  # the route already answered and read on regardless: nothing more to say
                return
            await _refuse(scope, send, "request body", limit)


async def _refuse(scope: Scope, send: Send, what: str, limit: int) -> None:
    await _answer(scope, send, PayloadTooLarge(f"{what} is over the {limit}-byte limit of this route"))


async def _answer(scope: Scope, send: Send, err: ModelyardError) -> None:
    """``err`` as problem+json (V2 paths: ``{"error": ...}``); the connection closes after it."""
    answer = problem(err, scope["path"], v2=scope["path"].startswith("/v2"))
    body = answer.encode()
    headers = [
        (b"content-type", answer.media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
