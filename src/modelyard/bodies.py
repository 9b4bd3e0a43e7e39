"""JSON request bodies parsed strictly and validated off the event loop, for routes whose bodies can be big.

A route class for routers whose JSON bodies can run to megabytes (jobs with inline rows, bulk events):
the body is parsed with orjson and validated in a worker thread, so one big body does not hold up every
other request, and parsing is the same strict JSON as the prediction routes read: ``NaN``,
``Infinity`` and numbers beyond a double are not JSON, and a body holding one is a 400 on every route; so is
text holding a NUL character, which the database cannot store.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from modelyard.errors import BadRequest

# a \u0000 escape (after an even number of backslashes, so not the text "\\u0000")
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def strict_loads(body: bytes) -> Any:
    """The JSON value in ``body``; ``BadRequest`` when it is not strict JSON (NaN and Infinity are not), or
    when a string in it holds a NUL character, which PostgreSQL cannot store as text."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON ({exc}); numbers must be finite: NaN and Infinity are not JSON"
        ) from None
    # the substring test is a fast scan; the regex (slow: it holds the interpreter) only runs on a hit
    if b"\\u0000" in body and NUL_ESCAPE.search(body):
        raise BadRequest("text in the body holds a NUL character (\\u0000), which is not accepted")
    return value


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # FastAPI reads a body without a content type as JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class OffLoopJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is parsed (strictly) and validated in a worker thread, before the
    usual handling (which then finds the body already validated, and passes it on as it is)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def route(request: Request) -> Response:
            if _is_json(request.headers.get("content-type")):
                body = await request.body()
                if body:
                    # Starlette's Request.json() returns this cached value: FastAPI does not parse again
                    request._json = await run_in_threadpool(self._parse, body)
            return await handler(request)

        return route

    def _parse(self, body: bytes) -> Any:
        value = strict_loads(body)
        if self.body_field is None or getattr(self, "_embed_body_fields", True):
            return value  # several body parameters: FastAPI validates each as usual
        validated, errors = self.body_field.validate(value, loc=("body",))
        if errors:
            raise RequestValidationError(errors)
        return validated
