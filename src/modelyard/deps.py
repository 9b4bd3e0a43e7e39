"""The web layer's FastAPI dependencies: the running app's context and the API-key checks.

Only routers import this module; services, workflows and the CLI take an ``AppContext`` and never load
FastAPI (tests/test_architecture.py keeps it so).
"""

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from modelyard.auth import KeyVerifier
from modelyard.context import AppContext
from modelyard.errors import BadRequest


async def get_context(request: Request) -> AppContext:
    """The context of the app serving ``request`` (a FastAPI dependency)."""
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]
"""Route parameter alias: the running app's context."""

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key in the X-API-Key header")


def _require(scope: str) -> Any:
    # async, so FastAPI does not hand each request's check to a thread
    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_header)],
    ) -> frozenset[str]:
        auth = f"Bearer {creds.credentials}" if creds else None
        verifier: KeyVerifier = request.app.state.ctx.verifier
        return await verifier.authorize(auth, api_key, scope)

    return Depends(dependency)


ReadKey = Annotated[frozenset[str], _require("read")]
PredictKey = Annotated[frozenset[str], _require("predict")]
WriteKey = Annotated[frozenset[str], _require("write")]
AdminKey = Annotated[frozenset[str], _require("admin")]


def last_event_id(
    header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> int | None:
    """The ``Last-Event-ID`` a reconnecting client sends (an event log id), or None."""
    if header is None or not header.strip():
        return None
    try:
        value = int(header)
    except ValueError:
        raise BadRequest(f"Last-Event-ID {header!r} is not an event id", field="Last-Event-ID") from None
    if value < 0:
        raise BadRequest(f"Last-Event-ID {header!r} is not an event id", field="Last-Event-ID")
    return value


LastEventId = Annotated[int | None, Depends(last_event_id)]
"""Route parameter alias: the ``Last-Event-ID`` header of a reconnecting SSE client, as an int."""
