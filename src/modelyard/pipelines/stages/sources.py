"""Where an event's raw data is: a file under the data dir, an artifact-store key, or an http(s) URL.

``parse_source`` checks a location when the event is submitted (cheap: no I/O); ``read_source`` reads it
once, when the event's raw stage runs, bounded in size (and, for URLs, in time and address).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx

from modelyard.errors import BadRequest, FetchFailed, NotFound, PayloadTooLarge
from modelyard.fetch import fetch_url
from modelyard.settings import Settings
from modelyard.storage import Storage, check_key

ARTIFACT = "artifact://"
Kind = Literal["file", "artifact", "http"]


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed location: ``value`` is an absolute path (file), a key (artifact) or a URL (http)."""

    kind: Kind
    value: str


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@lru_cache(maxsize=16)
def _root(data_dir: Path) -> Path:
    return data_dir.resolve()


def parse_source(text: str, *, data_dir: Path) -> Source:
    """The location ``text`` names; ``BadRequest`` (field ``source``) when it is not one we read."""
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise BadRequest(
            "source must be a path in the data dir, artifact://key or an http(s) URL", field="source"
        )
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise BadRequest(f"URL {text[:200]!r} has no host", field="source")
        return Source("http", text)
    if text.startswith(ARTIFACT):
        key = text.removeprefix(ARTIFACT)
        try:
            return Source("artifact", check_key(key))
        except BadRequest as exc:
            raise BadRequest(exc.detail, field="source") from None
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise BadRequest(
            f"unsupported source scheme {scheme!r}: use a data-dir path, artifact://key or http(s)",
            field="source",
        )
    root = _root(data_dir)
    path = Path(text.removeprefix("file://"))
    path = (path if path.is_absolute() else root / path).resolve()
    if not _inside(path, root):
        raise BadRequest(f"path {text[:200]!r} is outside the data dir", field="source")
    return Source("file", str(path))


@dataclass(frozen=True, slots=True)
class RawData:
    """What was read from a source."""

    data: bytes
    content_type: str | None


def read_file(text: str, *, settings: Settings, stream_above: int | None = None) -> RawData | None:
    """``read_source`` of the file that ``text`` (a data-dir path, as ``parse_source`` takes it) names,
    parsed, checked and read at once: the file is opened first, and the path it was opened at (which the
    kernel gives, ``/proc/self/fd``) must be inside the data dir. That costs a fraction of resolving the
    path first, and no symlink swapped in after the check can point the read elsewhere. Where the kernel
    does not give it, the path is resolved as ``parse_source`` does."""
    if (
        not _proc_fd()
        or not text.strip()
        or "\x00" in text
        or ("://" in text and not text.startswith("file://"))
    ):
        source = parse_source(text, data_dir=settings.data_dir)
        if source.kind != "file":
            raise BadRequest(f"source {text[:200]!r} is not a data-dir path", field="source")
        return _read_file(source.value, settings, stream_above, None)
    name = text.removeprefix("file://")
    root = _root(settings.data_dir)
    return _read_file(name if os.path.isabs(name) else os.path.join(root, name), settings, stream_above, root)


@lru_cache(maxsize=1)
def _proc_fd() -> bool:
    return os.path.isdir("/proc/self/fd")


def _opened_inside(fd: int, root: str) -> bool:
    """Whether the file open as ``fd`` is at a path inside ``root`` (a resolved directory)."""
    real = os.readlink(f"/proc/self/fd/{fd}")
    return real == root or real.startswith(root if root.endswith(os.sep) else root + os.sep)


def _read_file(path: str, settings: Settings, stream_above: int | None, root: Path | None) -> RawData | None:
    """The file at ``path`` (checked, once open, to be inside ``root`` when one is given). Opened without
    blocking and read only when it is a regular file: a FIFO or a device (named directly or through a
    symlink) neither holds the read up nor is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(f"file {path!r}") from None
    try:  # one open: its size and its bytes are of the same file
        if root is not None and not _opened_inside(fd, str(root)):
            raise BadRequest(f"path {path[:200]!r} is outside the data dir", field="source")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO or device)"
            raise FetchFailed(f"{path!r} is {kind}", field="source", extra={"upstream_status": 404})
        if stream_above is not None and info.st_size > stream_above:
            return None
        if info.st_size > settings.fetch_max_bytes:
            cap = settings.fetch_max_bytes
            raise PayloadTooLarge(f"file {path!r} is {info.st_size} bytes, over the {cap}-byte limit")
        with open(fd, "rb", closefd=False) as f:
            return RawData(f.read(), None)
    finally:
        os.close(fd)


def _missing(what: str) -> FetchFailed:
    return FetchFailed(f"{what} does not exist", field="source", extra={"upstream_status": 404})


def _local(source: Source, settings: Settings) -> Path:
    """The path of a file ``source``, checked again to be inside the data dir (a symlink may have been
    swapped in since submission)."""
    path = Path(source.value)
    if not _inside(path.resolve(), _root(settings.data_dir)):
        raise BadRequest(f"path {source.value!r} is outside the data dir", field="source")
    return path


def source_size(source: Source, *, settings: Settings, storage: Storage) -> int:
    """The size of a file or artifact ``source``, checked as ``read_source`` checks it, not read."""
    if source.kind == "artifact":
        try:
            return storage.stat(source.value).size
        except NotFound:
            raise _missing(f"artifact {source.value!r}") from None
    path = _local(source, settings)
    try:
        if not path.is_file():
            raise FileNotFoundError(source.value)
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(f"file {source.value!r}") from None


def read_source(
    source: Source,
    *,
    settings: Settings,
    storage: Storage,
    client: httpx.Client,
    stream_above: int | None = None,
    parsed_now: bool = False,
) -> RawData | None:
    """Read the raw data at ``source`` (at most ``settings.fetch_max_bytes``); None, unread, when it is a
    file or artifact of more than ``stream_above`` bytes (to be read by chunks instead). A file's path is
    checked again to be inside the data dir, unless ``parse_source`` made ``source`` just now
    (``parsed_now``: resolving it again costs as much as reading a small file)."""
    cap = settings.fetch_max_bytes
    if source.kind == "http":
        got = fetch_url(
            client,
            source.value,
            timeout=settings.fetch_timeout_seconds,
            max_bytes=cap,
            allow_private=settings.allow_private_urls,
        )
        return RawData(got.data, got.content_type)
    if source.kind == "artifact":
        try:
            info = storage.stat(source.value)
            if stream_above is not None and info.size > stream_above:
                return None
            if info.size > cap:
                raise PayloadTooLarge(
                    f"artifact {source.value!r} is {info.size} bytes, over the {cap}-byte limit"
                )
            return RawData(storage.get_bytes(source.value), None)
        except NotFound:
            raise _missing(f"artifact {source.value!r}") from None
    path = Path(source.value) if parsed_now else _local(source, settings)
    return _read_file(str(path), settings, stream_above, None)
