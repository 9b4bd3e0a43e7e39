"""The implicit first stage of every event: fetch its raw data once, keep it where every stage can read
it, and check it is what the pipeline says it is. A per-process LRU keeps recent raw data in memory, so
the stages of an event that run in the same worker do not read it again."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from PIL import Image, UnidentifiedImageError

from modelyard.context import AppContext
from modelyard.errors import UndecodableInput
from modelyard.fetch import http_client
from modelyard.inferrers.inputs import read_input
from modelyard.pipelines.stages.outputs import raw_key
from modelyard.pipelines.stages.sources import parse_source, read_source


class RawCache:
    """Raw data by event id, least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, event_id: str) -> bytes | None:
        """The cached data, if any."""
        with self._lock:
            data = self._items.get(event_id)
            if data is not None:
                self._items.move_to_end(event_id)
            return data

    def put(self, event_id: str, data: bytes) -> None:
        """Keep ``data`` (unless it alone is over the limit)."""
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(event_id, None)
            self._size -= len(old) if old is not None else 0
            self._items[event_id] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


def cache(ctx: AppContext) -> RawCache:
    """This process's raw data cache."""
    return ctx.raw_cache.get()


@dataclass(frozen=True, slots=True)
class Fetched:
    """Raw data fetched for an event and where it now is."""

    kind: str
    location: str
    size: int
    sha256: str
    content_type: str | None


def check_type(raw_type: str, data: bytes) -> None:
    """Raise ``UndecodableInput`` when ``data`` is plainly not of the pipeline's raw type."""
    try:
        if raw_type == "image":
            with Image.open(io.BytesIO(data)):  # reads the header only
                pass
        elif raw_type == "json":
            orjson.loads(data)
        elif raw_type == "array":
            np.load(io.BytesIO(data), allow_pickle=False)
        elif raw_type == "table":
            read_input("table", data)  # raises its own UndecodableInput
    except (UnidentifiedImageError, OSError, ValueError, orjson.JSONDecodeError) as exc:
        raise UndecodableInput(f"the raw data is not {raw_type}: {exc}") from None


def fetch(ctx: AppContext, event_id: str, source_text: str, raw_type: str) -> Fetched:
    """Read an event's source once; URLs are stored at ``pipelines/raw/{event_id}``, files and artifacts
    are read where they are."""
    source = parse_source(source_text, data_dir=ctx.settings.data_dir)
    got = read_source(source, settings=ctx.settings, storage=ctx.storage, client=http_client(ctx))
    check_type(raw_type, got.data)
    sha = hashlib.sha256(got.data).hexdigest()
    location = source.value
    if source.kind == "http":
        location = raw_key(event_id)
        ctx.storage.put_bytes(location, got.data)
    cache(ctx).put(event_id, got.data)
    return Fetched(source.kind, location, len(got.data), sha, got.content_type)


def read(ctx: AppContext, event_id: str, kind: str, location: str) -> bytes:
    """An event's raw data, from memory if this worker has it."""
    store = cache(ctx)
    data = store.get(event_id)
    if data is None:
        data = Path(location).read_bytes() if kind == "file" else ctx.storage.get_bytes(location)
        store.put(event_id, data)
    return data
