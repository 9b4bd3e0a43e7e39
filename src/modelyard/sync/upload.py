"""One file up through the resumable parts API: declared once (its upload id kept in the state file),
each part sent with its Content-MD5, the parts the server already has skipped on a resume."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.client import ApiError, Client
from modelyard.sync.state import FileState

API = "/api/v1/artifacts/uploads"
DEFAULT_PART = 8 * 1024 * 1024


def _received(client: Client, upload_id: str) -> set[int] | None:
    """The part numbers the server has, or None if it no longer knows the upload."""
    try:
        status = client.request("GET", f"{API}/{upload_id}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return {int(p["number"]) for p in status["parts"]}


def upload_file(
    client: Client,
    path: Path,
    state: FileState,
    save: Callable[[], None],
    *,
    part_size: int = DEFAULT_PART,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Store ``path`` at ``state.key``, resuming ``state.upload_id`` if the server still has it; calls
    ``save`` once the upload id is known and ``progress`` with the bytes of each part sent or skipped."""
    have = _received(client, state.upload_id) if state.upload_id else None
    if have is None:
        body = {"key": state.key, "size": state.size, "sha256": state.sha256, "part_size": part_size}
        started = client.request("POST", API, json=body)
        state.upload_id, have = started["id"], set()
        save()
    info = client.request("GET", f"{API}/{state.upload_id}")
    size, total = int(info["part_size"]), int(info["parts_total"])
    with path.open("rb") as f:
        for number in range(1, total + 1):
            if number in have:
                progress(min(size, state.size - (number - 1) * size))
                continue
            f.seek((number - 1) * size)
            data = f.read(size)
            md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            client.request(
                "PUT",
                f"{API}/{state.upload_id}/parts/{number}",
                content=data,
                headers={"Content-MD5": md5, "Content-Type": "application/octet-stream"},
            )
            progress(len(data))
    stored: dict[str, Any] = client.request("POST", f"{API}/{state.upload_id}/complete")
    return stored
