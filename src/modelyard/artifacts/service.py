"""Putting, reading, listing and deleting user files in the artifact store.

Keys are checked as the storage layer checks them (relative, no ``..``), and the prefixes where
modelyard keeps its own files (model versions, job inputs and outputs, stage outputs, archives) are
refused for writes, so a user file can never replace a model's (``uploads/`` holds the parts of
resumable uploads, ``parts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from modelyard.artifacts.schemas import ArtifactList, ArtifactPublic
from modelyard.errors import BadRequest
from modelyard.storage import ObjectInfo, Storage, check_key

RESERVED = ("models/", "jobs/", "pipelines/", "archive/", "uploads/")


def writable_key(key: str) -> str:
    """``key`` if a user may write or delete it; ``BadRequest`` (field ``key``) otherwise."""
    key = check_key(key)
    if key.startswith(RESERVED):
        raise BadRequest(
            f"artifact key {key!r} is under {', '.join(RESERVED)}, where modelyard keeps its own files; "
            "use another prefix, e.g. batches/",
            field="key",
        )
    return key


def public(info: ObjectInfo) -> ArtifactPublic:
    """The wire form of a stored object."""
    return ArtifactPublic(key=info.key, size=info.size, sha256=info.sha256)


def put(storage: Storage, key: str, path: Path, sha256: str) -> ArtifactPublic:
    """Store the file at ``path`` under ``key`` (replacing what was there); ``sha256`` as received."""
    info = storage.put_file(writable_key(key), path)
    return ArtifactPublic(key=info.key, size=info.size, sha256=info.sha256 or sha256)


def stat(storage: Storage, key: str) -> ArtifactPublic:
    """One stored file, or ``NotFound``."""
    return public(storage.stat(check_key(key)))


def read(storage: Storage, key: str) -> tuple[ArtifactPublic, Iterator[bytes]]:
    """A stored file's description and its bytes in chunks (``NotFound`` if it is not there)."""
    info = stat(storage, key)
    return info, storage.open_read(info.key)


def list_prefix(storage: Storage, prefix: str, limit: int) -> ArtifactList:
    """Files whose key starts with ``prefix`` (a folder, ``batches/``, or the start of a name)."""
    check_key(prefix, prefix=True)
    folder, _, _start = prefix.rpartition("/")
    found = (i for i in storage.list(f"{folder}/" if folder else "") if i.key.startswith(prefix))
    items = [public(i) for i in islice(found, limit + 1)]
    return ArtifactList(items=items[:limit], truncated=len(items) > limit)


def delete(storage: Storage, key: str) -> None:
    """Delete a user file (``NotFound`` if it is not there)."""
    key = writable_key(key)
    storage.stat(key)
    storage.delete(key)
