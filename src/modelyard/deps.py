"""The web layer's FastAPI dependencies: the running app's context and the API-key checks.

Only routers import this module; services, workflows and the CLI take an ``AppContext`` and never load
FastAPI (tests/test_architecture.py keeps it so).
"""

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from modelyard.auth import KeyVerifier
from modelyard.context import AppContext


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
