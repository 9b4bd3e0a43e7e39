"""The sync's local state file: per file, what was stored and submitted, and a part-way upload's id."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson


@dataclass(slots=True)
class FileState:
    """One file: the size and mtime it had, its sha256, its key in the store, the upload in progress (if
    any), and whether it is stored and its event submitted."""

    size: int
    mtime_ns: int
    sha256: str
    key: str
    upload_id: str | None = None
    stored: bool = False
    submitted: bool = False


class SyncState:
    """The state file: read at start, written (atomically) after every step, so an interruption at any
    point loses at most the step under way."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, FileState] = {}
        if path.exists():
            doc = orjson.loads(path.read_bytes())
            self.files = {rel: FileState(**entry) for rel, entry in doc.get("files", {}).items()}

    def save(self) -> None:
        """Write the state file (a temp file renamed over it)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps({"files": {rel: asdict(s) for rel, s in self.files.items()}}))
        os.replace(tmp, self.path)
