"""One pass over the folder and the watching loop: settled files are stored (unless the state file says
they already are, with the same size and mtime) and submitted as events named ``<path>@<sha256[:12]>``
(a name the server runs once), each under ``<prefix><sha256[:12]>/<path>`` so a changed file is a new
object and a new event while the old event keeps its own raw data."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.client import Client
from modelyard.storage import sha256_file
from modelyard.sync.folder import STATE_FILE, Seen, Settler, scan
from modelyard.sync.state import FileState, SyncState
from modelyard.sync.upload import DEFAULT_PART, upload_file


@dataclass(slots=True)
class Report:
    """What a pass did: files stored, files already there, events submitted (new), files not settled."""

    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    bytes_sent: int = 0


@dataclass(slots=True)
class Sync:
    """The sync of one folder into one pipeline's events."""

    client: Client
    root: Path
    pipeline: str
    prefix: str = "sync/"
    part_size: int = DEFAULT_PART
    state_path: Path | None = None
    on_file: Callable[[str, int, int], None] = lambda rel, i, n: None
    on_bytes: Callable[[int], None] = lambda n: None
    state: SyncState = field(init=False)

    def __post_init__(self) -> None:
        self.state = SyncState(self.state_path or self.root / STATE_FILE)

    def _entry(self, rel: str, seen: Seen) -> FileState:
        old = self.state.files.get(rel)
        if old is not None and (old.size, old.mtime_ns) == (seen.size, seen.mtime_ns):
            return old
        sha = sha256_file(self.root / rel)
        if old is not None and old.sha256 == sha:
            old.mtime_ns = seen.mtime_ns  # touched, not changed
            return old
        entry = FileState(seen.size, seen.mtime_ns, sha, f"{self.prefix}{sha[:12]}/{rel}")
        self.state.files[rel] = entry
        self.state.save()
        return entry

    def _already_stored(self, entry: FileState) -> bool:
        """The store has this file already (a state file lost, or another machine sent it): the key names
        the content by its sha256, and the size must match (the local store does not keep the sha256)."""
        found = self.client.request("GET", "/api/v1/artifacts", params={"prefix": entry.key, "limit": 1})
        return any(
            i["key"] == entry.key and i["size"] == entry.size and i.get("sha256") in (None, entry.sha256)
            for i in found["items"]
        )

    def one(self, rel: str, seen: Seen, report: Report) -> None:
        """Store and submit one settled file (each step recorded in the state file)."""
        entry = self._entry(rel, seen)
        if entry.stored and entry.submitted:
            report.skipped.append(rel)
            self.on_bytes(entry.size)
            return
        if not entry.stored:
            if self._already_stored(entry):
                self.on_bytes(entry.size)
                report.skipped.append(rel)
            else:
                upload_file(
                    self.client,
                    self.root / rel,
                    entry,
                    self.state.save,
                    part_size=self.part_size,
                    progress=self._sent(report),
                )
                report.stored.append(rel)
            entry.stored, entry.upload_id = True, None
            self.state.save()
        event = {"name": f"{rel}@{entry.sha256[:12]}", "source": f"artifact://{entry.key}"}
        got = self.client.request("POST", f"/api/v1/pipelines/{self.pipeline}/events", json=event)
        if got["created"]:
            report.submitted.append(rel)
        entry.submitted = True
        self.state.save()

    def _sent(self, report: Report) -> Callable[[int], None]:
        def sent(n: int) -> None:
            report.bytes_sent += n
            self.on_bytes(n)

        return sent

    def files(self, settled: list[str], seen: dict[str, Seen], report: Report) -> Report:
        """Store and submit ``settled`` files."""
        for i, rel in enumerate(settled, 1):
            self.on_file(rel, i, len(settled))
            self.one(rel, seen[rel], report)
        return report


def sync_once(sync: Sync, settle_seconds: float, *, sleep: Callable[[float], None] = time.sleep) -> Report:
    """Scan, wait the settle period, scan again: the files unchanged in between are stored and submitted;
    those still changing are reported (a later run takes them)."""
    first = scan(sync.root)
    sleep(settle_seconds)
    seen = scan(sync.root)
    ready = [rel for rel, sig in seen.items() if first.get(rel) == sig]
    report = Report(unsettled=[rel for rel in seen if rel not in ready])
    return sync.files(ready, seen, report)


def watch(
    sync: Sync,
    settle_seconds: float,
    interval: float,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_report: Callable[[Report], None] = lambda r: None,
) -> None:
    """Scan every ``interval`` seconds until ``stop()``; store and submit settled files not yet done."""
    settler = Settler(settle_seconds)
    while not stop():
        seen = scan(sync.root)
        ready = [rel for rel in settler.update(seen) if not _done(sync, rel, seen[rel])]
        if ready:
            on_report(sync.files(ready, seen, Report()))
        time.sleep(interval)


def _done(sync: Sync, rel: str, seen: Seen) -> bool:
    entry = sync.state.files.get(rel)
    return (
        entry is not None
        and entry.stored
        and entry.submitted
        and (entry.size, entry.mtime_ns) == (seen.size, seen.mtime_ns)
    )
