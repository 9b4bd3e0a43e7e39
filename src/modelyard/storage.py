"""The artifact store: model files and batch data under '/'-separated keys, on disk, S3 or in memory.

All methods are synchronous; async callers run them in a thread (``anyio.to_thread.run_sync``).
Listing and prefix deletion use *directory* semantics on every backend: ``list("a")`` yields
``a/x`` and ``a/x/y`` but neither ``a`` itself nor ``ab/z``.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

from obstore.store import S3Store

from modelyard.errors import BadRequest, NotFound, PayloadTooLarge

if TYPE_CHECKING:
    from obstore.store import S3Config

CHUNK = 1024 * 1024
_TMP = ".~tmp."  # temp files of LocalStorage; keys with a segment starting like this are refused
_SHA_ATTR = "sha256"  # S3 user metadata (x-amz-meta-sha256) written by every S3Storage put


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object. ``sha256`` (hex) is None when the backend does not know it cheaply."""

    key: str
    size: int
    sha256: str | None = None
    etag: str | None = None


@runtime_checkable
class Storage(Protocol):
    """A flat key -> bytes artifact store; every implementation behaves the same.

    Keys are relative '/'-separated strings; '..', '.', empty segments, a leading '/' or '\\'
    raise ``BadRequest``. Reading, stat-ing, copying or moving a missing key raises ``NotFound``;
    deleting one is a no-op. Writes are atomic: readers see the old object or the new one, never
    a part. ``put_stream`` hashes as it goes and, past ``max_bytes``, raises ``PayloadTooLarge``
    leaving any previous object at ``key`` untouched and nothing new behind. ``list`` and
    ``delete_prefix`` treat the prefix as a directory ("a" covers "a/x", not "ab" nor "a"
    itself; "" covers everything) and ``list`` yields in key order. ``local_path`` is the
    on-disk file for backends that have one (load it in place), else None. ``writing`` hands out a
    local file for a writer that wants a path (an encoder writing straight to disk, no copy in
    memory); when the block ends without error the file becomes the object, else nothing is stored.
    ``put_many`` stores many small objects, each atomically (not all or none), faster than one by one.
    """

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...
    def put_stream(
        self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None
    ) -> ObjectInfo: ...
    def put_file(self, key: str, path: Path) -> ObjectInfo: ...
    def writing(self, key: str) -> AbstractContextManager[Path]: ...
    def put_many(self, items: Sequence[tuple[str, bytes]]) -> builtins.list[ObjectInfo]: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open_read(self, key: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]: ...
    def local_path(self, key: str) -> Path | None: ...
    def download_to(self, key: str, path: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def stat(self, key: str) -> ObjectInfo: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def copy(self, src: str, dst: str) -> None: ...
    def move(self, src: str, dst: str) -> None: ...


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of the file at ``path``, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in _file_chunks(f):
            digest.update(chunk)
    return digest.hexdigest()


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return ``key`` if it is a safe relative key (a prefix may be empty or end in '/'), else BadRequest."""
    body = key.rstrip("/") if prefix else key
    if prefix and body == "":
        return ""
    problem = None
    if body == "":
        problem = "is empty"
    elif body.startswith("/") or "\\" in body or "\x00" in body:
        problem = "must be a relative '/'-separated path"
    elif any(seg in ("", ".", "..") for seg in body.split("/")):
        problem = "must not contain '..', '.' or empty segments"
    elif any(seg.startswith(_TMP) for seg in body.split("/")):
        problem = f"must not have segments starting with {_TMP!r}"
    if problem:
        raise BadRequest(f"artifact key {key!r} {problem}", field="key")
    return body


def _not_found(key: str) -> NotFound:
    return NotFound(f"artifact {key!r} does not exist")


def _capped(chunks: Iterable[bytes], max_bytes: int | None, digest: hashlib._Hash) -> Iterator[bytes]:
    """Pass ``chunks`` through, hashing them and raising PayloadTooLarge once past ``max_bytes``."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise PayloadTooLarge(f"artifact is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
        yield chunk


def _file_chunks(f: IO[bytes], chunk_size: int = CHUNK) -> Iterator[bytes]:
    while chunk := f.read(chunk_size):
        yield chunk


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temp file beside ``path`` to write; synced to disk and renamed over ``path`` when the block ends
    without error, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=path.parent)
    try:
        try:
            yield Path(tmp)
            os.fsync(fd)  # the same file, whatever handle wrote it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_atomic(path: Path, chunks: Iterable[bytes]) -> os.stat_result:
    """Write ``chunks`` to a temp file beside ``path`` and rename it over ``path``; removed on failure."""
    with _replacing(path) as tmp:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        return os.stat(tmp)


_sync_threads: ThreadPoolExecutor | None = None
_sync_threads_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    """Threads that wait on file syncs for ``put_many`` (they hold no interpreter while they wait)."""
    global _sync_threads
    with _sync_threads_lock:
        if _sync_threads is None:
            _sync_threads = ThreadPoolExecutor(8, thread_name_prefix="storage-sync")
        return _sync_threads


def _synced(path: str) -> os.stat_result:
    """Sync a written file to disk; its stat."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


class _Common:
    """Defaults shared by the backends, written in terms of the other methods."""

    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> ObjectInfo:
        raise NotImplementedError

    def open_read(self, key: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self.put_stream(key, [data])

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        with open(path, "rb") as f:
            return self.put_stream(key, _file_chunks(f))

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> builtins.list[ObjectInfo]:
        for key, _ in items:  # every key checked before anything is written
            check_key(key)
        return [self.put_bytes(key, data) for key, data in items]

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        check_key(key)
        with tempfile.TemporaryDirectory(prefix=_TMP) as folder:
            path = Path(folder) / "object"
            yield path
            self.put_file(key, path)

    def local_path(self, key: str) -> Path | None:
        check_key(key)
        return None

    def download_to(self, key: str, path: Path) -> None:
        _write_atomic(path, self.open_read(key))


class LocalStorage(_Common):
    """Objects are files under ``root``; writes go to a temp file in the same directory, then os.replace."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise _not_found(key)
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> ObjectInfo:
        path, digest = self._path(key), hashlib.sha256()
        st = _write_atomic(path, _capped(chunks, max_bytes, digest))
        return ObjectInfo(key, st.st_size, digest.hexdigest(), _etag(st))

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        with _replacing(self._path(key)) as tmp:
            yield tmp

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> builtins.list[ObjectInfo]:
        """Every object into its temp file first, then all synced side by side (the file system commits
        syncs that wait together in one journal commit; one object after another costs a commit each),
        then each renamed into place."""
        targets = [self._path(key) for key, _ in items]  # every key checked before anything is written
        temps: builtins.list[str] = []
        try:
            for path, (_, data) in zip(targets, items, strict=True):
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=path.parent)
                temps.append(tmp)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            stats = list(_sync_pool().map(_synced, temps)) if len(temps) > 1 else [_synced(t) for t in temps]
            infos = []
            for path, (key, data), tmp, st in zip(targets, items, temps, stats, strict=True):
                os.replace(tmp, path)
                infos.append(ObjectInfo(key, st.st_size, hashlib.sha256(data).hexdigest(), _etag(st)))
            return infos
        except BaseException:
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _not_found(key) from None

    def open_read(self, key: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self._file(key)  # eager NotFound; the file itself is opened lazily (no leaked handle)

        def gen() -> Iterator[bytes]:
            try:
                f = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                raise _not_found(key) from None
            with f:
                yield from _file_chunks(f, chunk_size)

        return gen()

    def local_path(self, key: str) -> Path:
        return self._file(key)

    def download_to(self, key: str, path: Path) -> None:
        with open(self._file(key), "rb") as f:
            _write_atomic(path, _file_chunks(f))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise _not_found(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise _not_found(key)
        return ObjectInfo(key, st.st_size, None, _etag(st))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._path(key).unlink()

    def _walk(self, prefix: str) -> builtins.list[tuple[str, Path]]:
        base = self.root / check_key(prefix, prefix=True)
        found: builtins.list[tuple[str, Path]] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(_TMP):
                    full = Path(dirpath, name)
                    found.append((full.relative_to(self.root).as_posix(), full))
        return sorted(found)

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        for _key, full in self._walk(prefix):
            with contextlib.suppress(FileNotFoundError):
                full.unlink()
                count += 1
        base = self.root / check_key(prefix, prefix=True)
        if base != self.root and base.is_dir():
            for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: len(w[0]), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only empty directories go
        return count

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found = []
        for key, full in self._walk(prefix):
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                st = full.stat()
                found.append(ObjectInfo(key, st.st_size, None, _etag(st)))
        return iter(found)

    def copy(self, src: str, dst: str) -> None:
        with open(self._file(src), "rb") as f:
            _write_atomic(self._path(dst), _file_chunks(f))

    def move(self, src: str, dst: str) -> None:
        source, target = self._file(src), self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


class MemoryStorage(_Common):
    """A dict-backed, thread-safe store for tests and ephemeral use."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def _get(self, key: str) -> tuple[bytes, str]:
        with self._lock:
            try:
                return self._objects[check_key(key)]
            except KeyError:
                raise _not_found(key) from None

    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> ObjectInfo:
        check_key(key)
        digest = hashlib.sha256()
        data = b"".join(_capped(chunks, max_bytes, digest))
        with self._lock:
            self._objects[key] = (data, digest.hexdigest())
        return ObjectInfo(key, len(data), digest.hexdigest(), digest.hexdigest())

    def get_bytes(self, key: str) -> bytes:
        return self._get(key)[0]

    def open_read(self, key: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        data = self._get(key)[0]
        return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            return key in self._objects

    def stat(self, key: str) -> ObjectInfo:
        data, sha = self._get(key)
        return ObjectInfo(key, len(data), sha, sha)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        with self._lock:
            return sum(self._objects.pop(k, None) is not None for k in keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = check_key(prefix, prefix=True)
        with self._lock:
            found = [(k, v) for k, v in self._objects.items() if not base or k.startswith(base + "/")]
        return iter([ObjectInfo(k, len(data), sha, sha) for k, (data, sha) in sorted(found)])

    def copy(self, src: str, dst: str) -> None:
        entry = self._get(src)
        check_key(dst)
        with self._lock:
            self._objects[dst] = entry

    def move(self, src: str, dst: str) -> None:
        check_key(dst)
        with self._lock:
            try:
                self._objects[dst] = self._objects.pop(check_key(src))
            except KeyError:
                raise _not_found(src) from None


class S3Storage(_Common):
    """An S3 (or S3-compatible) bucket and key prefix via obstore.

    ``put_stream`` spools to a local temp file (in memory up to ``spool_memory`` bytes) while it
    hashes and enforces ``max_bytes``, then uploads in one atomic PUT / multipart upload carrying
    the sha256 as user metadata, so a rejected upload never reaches the bucket. Credentials and
    region not given here come from the usual ``AWS_*`` environment variables.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        allow_http: bool | None = None,
        spool_memory: int = 8 * CHUNK,
    ) -> None:
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        self.url, self.spool_memory = url, spool_memory
        config: S3Config = {}
        if endpoint_url is not None:
            config["endpoint"] = endpoint_url
        if region is not None:
            config["region"] = region
        if access_key_id is not None and secret_access_key is not None:
            config["access_key_id"], config["secret_access_key"] = access_key_id, secret_access_key
        if session_token is not None:
            config["session_token"] = session_token
        if allow_http is None:
            allow_http = bool(endpoint_url and endpoint_url.startswith("http://"))
        self._store = S3Store.from_url(url, config=config, client_options={"allow_http": allow_http})

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> ObjectInfo:
        check_key(key)
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=self.spool_memory) as spool:
            for chunk in _capped(chunks, max_bytes, digest):
                spool.write(chunk)
            size = spool.tell()
            spool.seek(0)
            return self._upload(key, spool, size, digest.hexdigest())

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        check_key(key)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in _file_chunks(f):
                digest.update(chunk)
        return self._upload(key, Path(path), path.stat().st_size, digest.hexdigest())

    def _upload(self, key: str, data: IO[bytes] | Path, size: int, sha: str) -> ObjectInfo:
        result = self._store.put(key, data, attributes={_SHA_ATTR: sha})
        return ObjectInfo(key, size, sha, result["e_tag"])

    def get_bytes(self, key: str) -> bytes:
        try:
            return bytes(self._store.get(check_key(key)).bytes())
        except FileNotFoundError:
            raise _not_found(key) from None

    def open_read(self, key: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            return self._store.get(check_key(key)).stream(min_chunk_size=chunk_size)
        except FileNotFoundError:
            raise _not_found(key) from None

    def exists(self, key: str) -> bool:
        try:
            self._store.head(check_key(key))
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        try:
            result = self._store.get(check_key(key), options={"head": True})
        except FileNotFoundError:
            raise _not_found(key) from None
        meta = result.meta
        return ObjectInfo(key, meta["size"], result.attributes.get(_SHA_ATTR), meta["e_tag"])

    def delete(self, key: str) -> None:
        self._store.delete(check_key(key))  # S3 DELETE of a missing key succeeds

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            self._store.delete(keys[i : i + 1000])
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        stream = self._store.list(check_key(prefix, prefix=True) or None, chunk_size=1000)
        return (ObjectInfo(m["path"], m["size"], None, m["e_tag"]) for batch in stream for m in batch)

    def copy(self, src: str, dst: str) -> None:
        self._copy(src, dst, move=False)

    def move(self, src: str, dst: str) -> None:
        self._copy(src, dst, move=True)  # server-side copy, then delete: not atomic

    def _copy(self, src: str, dst: str, *, move: bool) -> None:
        if check_key(src) == check_key(
            dst
        ):  # S3 refuses a plain self-copy, and copy-then-delete would lose the object
            self.stat(src)
            return
        try:
            (self._store.rename if move else self._store.copy)(src, dst)
        except FileNotFoundError:
            raise _not_found(src) from None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def open_storage(url: str, *, data_dir: Path, s3_endpoint_url: str | None = None) -> Storage:
    """Build the store a settings URL names: '' / path / file://… (local), s3://bucket/prefix, memory://."""
    if url.startswith("memory://"):
        return MemoryStorage()
    if url.startswith("s3://"):
        return S3Storage(url, endpoint_url=s3_endpoint_url)
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif _SCHEME.match(url):
        raise ValueError(f"unsupported storage URL {url!r} (use a path, file://, s3:// or memory://)")
    root = Path(url).expanduser() if url else Path("artifacts")
    return LocalStorage(root if root.is_absolute() else Path(data_dir) / root)
