"""A small typed Python client of the modelyard API, over httpx.

from modelyard.client import Client
with Client("http://127.0.0.1:8000", api_key="...") as my:
    my.push_model("model.onnx", name="churn", metadata={"task": "classification"})
    my.predict("churn", rows=[[0.1] * 20])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson


class ApiError(Exception):
    """An error answer from the server; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status = status
        self.problem = problem
        super().__init__(
            f"{status} {problem.get('code', '')}: {problem.get('detail') or problem.get('error') or problem}"
        )


class Client:
    """Registry, prediction, job and pipeline operations against one modelyard server."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0):
        self.url = (url or os.environ.get("MODELYARD_URL") or "http://127.0.0.1:8000").rstrip("/")
        key = api_key or os.environ.get("MODELYARD_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; JSON answer decoded, errors raised as ``ApiError``."""
        resp = self.http.request(method, path, **kwargs)
        return self._decode(resp)

    @staticmethod
    def _decode(resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"detail": resp.text}
            raise ApiError(resp.status_code, problem)
        if resp.status_code == 204 or not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json") or resp.headers.get(
            "content-type", ""
        ).startswith("application/problem+json"):
            return orjson.loads(resp.content)
        return resp.content

    # registry
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a model name."""
        body = {"name": name, "description": description, "tags": tags or [], "metadata": metadata or {}}
        result: dict[str, Any] = self.request("POST", "/api/v1/models", json=body)
        return result

    def push_model(
        self,
        path: str | Path,
        *,
        name: str,
        metadata: dict[str, Any] | None = None,
        description: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload ``path`` as the next version of ``name``, registering the name when new.

        The server creates a new model and its first version in one transaction: a refused file leaves
        no model behind. ``metadata`` is merged into the model's once the version is stored.
        """
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/v1/models/{name}/versions",
            params={"create": "true", "description": description},
            content=_read_chunks(Path(path), progress),
            headers={"Content-Type": "application/octet-stream"},
        )
        if metadata:
            self.request("PATCH", f"/api/v1/models/{name}", json={"metadata": metadata})
        return result

    def list_models(self, **filters: str) -> list[dict[str, Any]]:
        """Models, filtered by ``tag=`` and ``metadata.<field>=``."""
        result: dict[str, Any] = self.request("GET", "/api/v1/models", params=filters)
        return list(result["items"])

    def get_model(self, name: str) -> dict[str, Any]:
        """One model with its versions."""
        result: dict[str, Any] = self.request("GET", f"/api/v1/models/{name}")
        return result

    def delete_model(self, name: str, version: int | str | None = None) -> None:
        """Delete a model, or one of its versions."""
        path = f"/api/v1/models/{name}" + (f"/versions/{version}" if version is not None else "")
        self.request("DELETE", path)

    # serving
    def predict(
        self,
        name: str,
        *,
        inputs: dict[str, Any] | None = None,
        rows: list[Any] | None = None,
        version: int | str = "latest",
    ) -> dict[str, Any]:
        """Predict with ``inputs`` (by input name) or tabular ``rows``: the outputs, or, for a prediction
        over more rows than the server answers at once, the batch job it became (``id``, ``state``...)."""
        body: dict[str, Any] = {"rows": rows} if rows is not None else {"inputs": inputs or {}}
        result: dict[str, Any] = self.request(
            "POST",
            f"/api/v1/models/{name}/versions/{version}/predict",
            content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
            headers={"Content-Type": "application/json"},
        )
        return result

    # artifacts
    def put_artifact(
        self, path: str | Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """Upload the file at ``path`` to the artifact store under ``key`` (streamed)."""
        result: dict[str, Any] = self.request(
            "PUT",
            f"/api/v1/artifacts/{key}",
            content=_read_chunks(Path(path), progress),
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    def list_artifacts(self, prefix: str = "", *, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored files whose key starts with ``prefix``."""
        result: dict[str, Any] = self.request(
            "GET", "/api/v1/artifacts", params={"prefix": prefix, "limit": limit}
        )
        return list(result["items"])

    def download_artifact(self, key: str, path: str | Path) -> Path:
        """Write the stored file ``key`` to ``path`` (streamed; nothing is left there on failure)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        try:
            with self.http.stream("GET", f"/api/v1/artifacts/{key}") as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._decode(resp)
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes():
                        f.write(chunk)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def delete_artifact(self, key: str) -> None:
        """Delete a stored file."""
        self.request("DELETE", f"/api/v1/artifacts/{key}")

    # pipelines
    def delete_pipeline(self, name: str, *, force: bool = False) -> None:
        """Delete a pipeline with its events and stored outputs (``force``: cancel running events first)."""
        self.request("DELETE", f"/api/v1/pipelines/{name}", params={"force": force})

    def delete_event(self, event_id: str, *, force: bool = False) -> None:
        """Delete an event with its stage runs and stored outputs (``force``: cancel it first if running)."""
        self.request("DELETE", f"/api/v1/events/{event_id}", params={"force": force})

    def create_key(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """Create an API key (needs an admin key); the secret is in the answer only."""
        result: dict[str, Any] = self.request("POST", "/api/v1/keys", json={"name": name, "scopes": scopes})
        return result


def _read_chunks(
    path: Path, progress: Callable[[int], None] | None, size: int = 1024 * 1024
) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            if progress:
                progress(len(chunk))
            yield chunk
