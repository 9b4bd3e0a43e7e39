"""The dashboard's API caller: requests to the app's own ``/api/v1`` routes, in process, as the viewer."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp


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
