"""The implicit first stage of every event: fetch its raw data once, keep it where every stage can read
it, and check it is what the pipeline says it is. A per-process LRU keeps recent raw data in memory, so
the stages of an event that run in the same worker do not read it again.

Raw data of type ``bytes`` or ``image`` in a file or an artifact larger than that cache is not read into
memory: it is hashed by chunks and checked from its header, and a stage that reads files (a large scan
read by tiles) gets its local ``path``. Only a stage that reads it whole as bytes is held to
``MODELYARD_FETCH_MAX_BYTES``."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from PIL import Image, UnidentifiedImageError

from modelyard.context import AppContext
from modelyard.errors import PayloadTooLarge, UndecodableInput
from modelyard.fetch import http_client
from modelyard.inferrers.inputs import read_input
from modelyard.pipelines.stages.outputs import raw_key
from modelyard.pipelines.stages.sources import (
    RawData,
    Source,
    parse_source,
    read_file,
    read_source,
    source_size,
)
from modelyard.storage import CHUNK, Storage

STREAMED_TYPES = ("bytes", "image")  # raw types checked from a header, so never read whole to fetch


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
    are read where they are (a large one by chunks, see the module's docstring)."""
    source = parse_source(source_text, data_dir=ctx.settings.data_dir)
    got = read_whole(ctx, source, raw_type)
    if got is None:
        size = source_size(source, settings=ctx.settings, storage=ctx.storage)
        return _fetch_streamed(ctx, source, size, raw_type)
    sha = hashlib.sha256(got.data).hexdigest()
    location = source.value
    if source.kind == "http":
        location = raw_key(event_id)
        ctx.storage.put_bytes(location, got.data)
    cache(ctx).put(event_id, got.data)
    return Fetched(source.kind, location, len(got.data), sha, got.content_type)


def read_whole(ctx: AppContext, source: Source | str, raw_type: str, *, check: bool = True) -> RawData | None:
    """The raw data at ``source`` (made by ``parse_source`` just now, so not resolved again, or a data-dir
    path, read by ``sources.read_file``) read into memory and (unless ``check`` is false: its reader will
    decode it anyway) checked to be of ``raw_type``; None when it is a file or artifact too large for that
    (it is then read by chunks, see the module's docstring)."""
    above = cache(ctx).max_bytes if raw_type in STREAMED_TYPES else None
    if isinstance(source, str):
        got = read_file(source, settings=ctx.settings, stream_above=above)
    else:
        got = read_source(
            source,
            settings=ctx.settings,
            storage=ctx.storage,
            client=http_client(ctx),
            stream_above=above,
            parsed_now=True,
        )
    if got is not None and check:
        check_type(raw_type, got.data)
    return got


def _fetch_streamed(ctx: AppContext, source: Source, size: int, raw_type: str) -> Fetched:
    """A large file or artifact hashed by chunks and checked from its header, never held whole."""
    digest = hashlib.sha256()
    head = b""
    for chunk in _chunks(ctx, source.kind, source.value):
        head = head or chunk[:65536]
        digest.update(chunk)
    if raw_type == "image":
        try:
            with Image.open(source.value if source.kind == "file" else io.BytesIO(head)):
                pass  # the header only
        except (UnidentifiedImageError, OSError) as exc:
            raise UndecodableInput(f"the raw data is not image: {exc}") from None
    return Fetched(source.kind, source.value, size, digest.hexdigest(), None)


def _chunks(ctx: AppContext, kind: str, location: str) -> Iterator[bytes]:
    if kind == "file":
        with open(location, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    else:
        yield from ctx.storage.open_read(location)


def read(ctx: AppContext, event_id: str, kind: str, location: str) -> bytes:
    """An event's raw data, from memory if this worker has it; ``PayloadTooLarge`` past
    ``MODELYARD_FETCH_MAX_BYTES`` (a stage that reads files gets the ``path`` instead)."""
    store = cache(ctx)
    data = store.get(event_id)
    if data is None:
        cap = ctx.settings.fetch_max_bytes
        size = Path(location).stat().st_size if kind == "file" else ctx.storage.stat(location).size
        if size > cap:
            raise PayloadTooLarge(
                f"the raw data is {size} bytes, over the {cap}-byte limit of a stage that reads it whole"
            )
        data = Path(location).read_bytes() if kind == "file" else ctx.storage.get_bytes(location)
        store.put(event_id, data)
    return data


def path(ctx: AppContext, kind: str, location: str, scratch: Path) -> Path:
    """An event's raw data as a local file: the file itself, the store's own file, or a copy downloaded
    into ``scratch`` (an S3 store)."""
    if kind == "file":
        return Path(location)
    return local_copy(ctx.storage, location, scratch)


def local_copy(storage: Storage, key: str, scratch: Path) -> Path:
    """The stored object ``key`` as a local file: the store's own, or downloaded into ``scratch``."""
    found = storage.local_path(key)
    if found is not None:
        return found
    target = scratch / key.replace("/", "_")
    if not target.exists():
        storage.download_to(key, target)
    return target
