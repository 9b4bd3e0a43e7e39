"""The watched folder: which files are there, and which have settled (stopped changing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = ".modelyard-sync.json"


@dataclass(frozen=True, slots=True)
class Seen:
    """A file as one scan saw it."""

    size: int
    mtime_ns: int


def scan(root: Path) -> dict[str, Seen]:
    """Every regular file under ``root`` by its '/'-separated relative path; hidden files and folders
    (the state file among them) are left out."""
    found: dict[str, Seen] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        st = path.stat()
        found[rel.as_posix()] = Seen(st.st_size, st.st_mtime_ns)
    return found


class Settler:
    """Files whose size and mtime have not changed for ``settle_seconds`` (by ``clock``)."""

    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_seconds, self.clock = settle_seconds, clock
        self._since: dict[str, tuple[Seen, float]] = {}

    def update(self, seen: dict[str, Seen]) -> list[str]:
        """Record a scan; the files settled by now, in path order."""
        now = self.clock()
        for rel in list(self._since):
            if rel not in seen:
                del self._since[rel]
        ready = []
        for rel, sig in seen.items():
            last = self._since.get(rel)
            if last is None or last[0] != sig:
                self._since[rel] = (sig, now)
            elif now - last[1] >= self.settle_seconds:
                ready.append(rel)
        return ready

    def pending(self) -> list[str]:
        """Files seen but not settled yet."""
        now = self.clock()
        return [rel for rel, (_, t) in self._since.items() if now - t < self.settle_seconds]
