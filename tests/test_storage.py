"""One behaviour suite for every Storage backend; S3 runs against a real moto server process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelyard.errors import BadRequest, NotFound, PayloadTooLarge
from modelyard.storage import (
    LocalStorage,
    MemoryStorage,
    ObjectInfo,
    S3Storage,
    Storage,
    open_storage,
)
from tests.s3server import AWS_ENV, BUCKET, s3_client


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.slow)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "artifacts")
    if request.param == "memory":
        return MemoryStorage()
    endpoint = request.getfixturevalue("s3_env")
    # A fresh prefix per test isolates tests sharing the bucket; a tiny spool exercises the on-disk path.
    return S3Storage(f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=endpoint, spool_memory=1024)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keys(storage: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in storage.list(prefix)]


def known_sha(storage: Storage) -> bool:
    """Whether stat() reports sha256 (LocalStorage does not hash on stat)."""
    return not isinstance(storage, LocalStorage)


def test_round_trip(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(3000)
    info = storage.put_bytes("models/iris/1/model.onnx", data)
    assert info == ObjectInfo("models/iris/1/model.onnx", 3000, sha(data), info.etag)
    assert storage.exists("models/iris/1/model.onnx")
    assert not storage.exists("models/iris/1")
    assert storage.get_bytes("models/iris/1/model.onnx") == data
    chunks = list(storage.open_read("models/iris/1/model.onnx", chunk_size=1000))
    assert b"".join(chunks) == data  # chunk_size is a hint: S3 yields what the network delivers
    st = storage.stat("models/iris/1/model.onnx")
    assert (st.key, st.size) == ("models/iris/1/model.onnx", 3000)
    assert st.sha256 == (sha(data) if known_sha(storage) else None)

    storage.download_to("models/iris/1/model.onnx", tmp_path / "dl" / "m.onnx")
    assert (tmp_path / "dl" / "m.onnx").read_bytes() == data

    src = tmp_path / "src.bin"
    src.write_bytes(b"from a file")
    assert storage.put_file("f/src.bin", src) == ObjectInfo(
        "f/src.bin", 11, sha(b"from a file"), storage.stat("f/src.bin").etag
    )
    assert storage.get_bytes("f/src.bin") == b"from a file"


def test_overwrite_and_empty(storage: Storage) -> None:
    storage.put_bytes("k", b"one")
    storage.put_bytes("k", b"")
    assert storage.get_bytes("k") == b""
    assert storage.stat("k").size == 0
    assert b"".join(storage.open_read("k")) == b""


def test_local_path(storage: Storage) -> None:
    storage.put_bytes("a/b.onnx", b"x")
    path = storage.local_path("a/b.onnx")
    if isinstance(storage, LocalStorage):
        assert path is not None and path.is_absolute() and path.read_bytes() == b"x"
        with pytest.raises(NotFound):
            storage.local_path("a/missing.onnx")
    else:
        assert path is None


def test_put_stream_hashes(storage: Storage) -> None:
    parts = [os.urandom(700) for _ in range(10)]
    info = storage.put_stream("s/blob", iter(parts), max_bytes=7000)  # exactly at the cap is fine
    data = b"".join(parts)
    assert (info.key, info.size, info.sha256) == ("s/blob", 7000, sha(data))
    assert storage.get_bytes("s/blob") == data
    if known_sha(storage):
        assert storage.stat("s/blob").sha256 == sha(data)


def test_cap_exceeded_leaves_nothing(storage: Storage, request: pytest.FixtureRequest) -> None:
    storage.put_bytes("cap/old", b"previous")
    with pytest.raises(PayloadTooLarge):
        storage.put_stream("cap/new", (b"x" * 1000 for _ in range(5)), max_bytes=4500)
    with pytest.raises(PayloadTooLarge):
        storage.put_stream("cap/old", (b"y" * 1000 for _ in range(5)), max_bytes=4500)
    assert not storage.exists("cap/new")
    assert storage.get_bytes("cap/old") == b"previous"
    assert keys(storage) == ["cap/old"]
    if isinstance(storage, LocalStorage):
        assert sorted(os.listdir(storage.root / "cap")) == ["old"]  # no temp file left
    if isinstance(storage, S3Storage):
        client = s3_client(request.getfixturevalue("s3_endpoint"))
        assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_failing_source_leaves_nothing(storage: Storage) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        storage.put_stream("broken", chunks())
    assert keys(storage) == []


def test_writing_a_file_in_place(storage: Storage) -> None:
    storage.put_bytes("w/kept", b"previous")
    with storage.writing("w/new") as path:
        path.write_bytes(b"written by path")
    assert storage.get_bytes("w/new") == b"written by path"

    with pytest.raises(OSError, match="encoder failed"), storage.writing("w/kept") as path:
        path.write_bytes(b"half")
        raise OSError("encoder failed")
    assert storage.get_bytes("w/kept") == b"previous"  # the failed write replaced nothing
    assert keys(storage) == ["w/kept", "w/new"]
    if isinstance(storage, LocalStorage):
        assert sorted(os.listdir(storage.root / "w")) == ["kept", "new"]  # no temp file left


def test_put_many(storage: Storage) -> None:
    storage.put_bytes("m/b", b"old")
    infos = storage.put_many([("m/a", b"first"), ("m/b", b"second"), ("m/c/d", b"")])
    assert [(i.key, i.size) for i in infos] == [("m/a", 5), ("m/b", 6), ("m/c/d", 0)]
    assert [storage.get_bytes(k) for k in ("m/a", "m/b", "m/c/d")] == [b"first", b"second", b""]
    if known_sha(storage):
        assert infos[1].sha256 == sha(b"second")
    assert storage.put_many([]) == []

    with pytest.raises(BadRequest):  # one bad key: refused before anything is written
        storage.put_many([("m/e", b"x"), ("../m/f", b"y")])
    assert keys(storage) == ["m/a", "m/b", "m/c/d"]
    if isinstance(storage, LocalStorage):
        assert sorted(os.listdir(storage.root / "m")) == ["a", "b", "c"]  # no temp file left


def test_listing_is_by_directory_and_sorted(storage: Storage) -> None:
    for key in ["m/b/2", "m/a/1", "m/a/sub/3", "ma/x", "other"]:
        storage.put_bytes(key, key.encode())
    assert keys(storage, "m") == ["m/a/1", "m/a/sub/3", "m/b/2"]
    assert keys(storage, "m/") == keys(storage, "m")
    assert keys(storage, "m/a") == ["m/a/1", "m/a/sub/3"]
    assert keys(storage, "nothing") == []
    assert keys(storage) == ["m/a/1", "m/a/sub/3", "m/b/2", "ma/x", "other"]
    assert [i.size for i in storage.list("m/a")] == [5, 9]


def test_delete(storage: Storage) -> None:
    storage.put_bytes("d/1", b"1")
    storage.delete("d/1")
    storage.delete("d/1")  # missing is fine
    storage.delete("never/there")
    assert not storage.exists("d/1")


def test_delete_prefix(storage: Storage) -> None:
    for key in ["v/1/a", "v/1/b/c", "v/10/a", "w"]:
        storage.put_bytes(key, b"z")
    assert storage.delete_prefix("v/1") == 2
    assert keys(storage) == ["v/10/a", "w"]
    assert storage.delete_prefix("v/1") == 0
    if isinstance(storage, LocalStorage):
        assert not (storage.root / "v" / "1").exists()
    assert storage.delete_prefix("") == 2
    assert keys(storage) == []


def test_copy_and_move(storage: Storage) -> None:
    storage.put_bytes("live/model.onnx", b"weights")
    storage.put_bytes("archive/model.onnx", b"stale")
    storage.copy("live/model.onnx", "backup/model.onnx")
    assert storage.get_bytes("backup/model.onnx") == b"weights"
    storage.move("live/model.onnx", "archive/model.onnx")  # overwrites
    assert not storage.exists("live/model.onnx")
    assert storage.get_bytes("archive/model.onnx") == b"weights"
    assert keys(storage) == ["archive/model.onnx", "backup/model.onnx"]
    storage.move("backup/model.onnx", "backup/model.onnx")  # onto itself: a no-op, not a loss
    storage.copy("backup/model.onnx", "backup/model.onnx")
    assert storage.get_bytes("backup/model.onnx") == b"weights"


def test_concurrent_threads(storage: Storage) -> None:
    def work(i: int) -> bytes:
        storage.put_bytes(f"t/{i}", bytes([i]) * 1000)
        return storage.get_bytes(f"t/{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [bytes([i]) * 1000 for i in range(16)]
    assert len(keys(storage, "t")) == 16


async def test_usable_from_async_via_threads(storage: Storage) -> None:
    await asyncio.to_thread(storage.put_bytes, "async/k", b"v")
    assert await asyncio.to_thread(storage.get_bytes, "async/k") == b"v"


BAD_KEYS = ["../etc/passwd", "a/../../b", "/abs/key", "a//b", "./a", "a/.", "", "a\\b", ".~tmp.x"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected(storage: Storage, key: str, tmp_path: Path) -> None:
    storage.put_bytes("ok", b"1")
    calls: list[Callable[[], object]] = [
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.put_stream(key, [b"x"]),
        lambda: storage.writing(key).__enter__(),
        lambda: storage.get_bytes(key),
        lambda: storage.open_read(key),
        lambda: storage.stat(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.local_path(key),
        lambda: storage.download_to(key, tmp_path / "out"),
        lambda: storage.copy("ok", key),
        lambda: storage.move(key, "ok"),
    ]
    if key:  # "" is a valid prefix (everything)
        calls += [lambda: list(storage.list(key)), lambda: storage.delete_prefix(key)]
    for call in calls:
        with pytest.raises(BadRequest) as exc_info:
            call()
        assert type(exc_info.value) is BadRequest
        assert exc_info.value.field == "key"
    assert keys(storage) == ["ok"]
    assert not (tmp_path / "etc").exists()


def test_not_found(storage: Storage, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: storage.get_bytes("no/such"),
        lambda: storage.stat("no/such"),
        lambda: storage.open_read("no/such"),
        lambda: storage.download_to("no/such", tmp_path / "out"),
        lambda: storage.copy("no/such", "x"),
        lambda: storage.move("no/such", "x"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as exc_info:
            call()
        assert type(exc_info.value) is NotFound
        assert exc_info.value.detail == "artifact 'no/such' does not exist"
    assert not storage.exists("no/such")
    assert not (tmp_path / "out").exists()
    assert keys(storage) == []


def test_open_storage_local(tmp_path: Path) -> None:
    default = open_storage("", data_dir=tmp_path)
    assert isinstance(default, LocalStorage) and default.root == (tmp_path / "artifacts").resolve()
    relative = open_storage("store", data_dir=tmp_path)
    assert isinstance(relative, LocalStorage) and relative.root == (tmp_path / "store").resolve()
    absolute = open_storage(f"file://{tmp_path}/abs", data_dir=tmp_path / "elsewhere")
    assert isinstance(absolute, LocalStorage) and absolute.root == (tmp_path / "abs").resolve()
    plain = open_storage(str(tmp_path / "plain"), data_dir=tmp_path / "elsewhere")
    assert isinstance(plain, LocalStorage) and plain.root == (tmp_path / "plain").resolve()
    assert isinstance(open_storage("memory://", data_dir=tmp_path), MemoryStorage)
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_storage("gs://bucket/x", data_dir=tmp_path)


@pytest.mark.slow
def test_open_storage_s3(s3_env: str, tmp_path: Path) -> None:
    store = open_storage(
        f"s3://{BUCKET}/{uuid.uuid4().hex}/nested", data_dir=tmp_path, s3_endpoint_url=s3_env
    )
    assert isinstance(store, S3Storage)
    store.put_bytes("x", b"via env credentials")
    assert store.get_bytes("x") == b"via env credentials"


@pytest.mark.slow
def test_s3_prefix_and_explicit_credentials(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    prefix = uuid.uuid4().hex
    store = S3Storage(
        f"s3://{BUCKET}/{prefix}",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    store.put_bytes("m/model.onnx", b"w")
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert [o["Key"] for o in listed["Contents"]] == [f"{prefix}/m/model.onnx"]
    head = s3_client(s3_endpoint).head_object(Bucket=BUCKET, Key=f"{prefix}/m/model.onnx")
    assert head["Metadata"] == {"sha256": sha(b"w")}
