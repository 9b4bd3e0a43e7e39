"""Abandoned resumable uploads: the heartbeat sweep removes those nobody touched, parts and all."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelyard.artifacts import parts
from modelyard.artifacts.schemas import UploadCreate
from modelyard.durable import engine
from modelyard.errors import NotFound
from modelyard.settings import Settings
from modelyard.storage import LocalStorage

PART = parts.MIN_PART


def _upload(storage: LocalStorage, tmp_path: Path, key: str) -> str:
    data = bytes(range(256)) * (PART * 2 // 256)
    created = parts.start(
        storage,
        UploadCreate(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(), part_size=PART),
        10**9,
    )
    chunk = tmp_path / f"{created.id}.part"
    chunk.write_bytes(data[:PART])
    md5 = base64.b64encode(hashlib.md5(data[:PART], usedforsecurity=False).digest()).decode()
    parts.put_part(storage, created.id, 1, chunk, md5)
    return created.id


def _keys(storage: LocalStorage, upload_id: str) -> list[str]:
    return [info.key for info in storage.list(f"{parts.PREFIX}{upload_id}")]


def test_sweep_removes_an_abandoned_upload_with_its_parts_and_keeps_a_live_one(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    old = _upload(storage, tmp_path, "scans/old.tif")
    assert len(_keys(storage, old)) == 3  # declaration, part 1, touched mark
    later = time.time() + 10 * 3600
    live = _upload(storage, tmp_path, "scans/live.tif")
    parts._touch(storage, live, later - 60)  # a part arrived a minute before the sweep

    removed = parts.sweep(storage, 9 * 3600, now=later)

    assert removed == [old]
    assert _keys(storage, old) == []
    with pytest.raises(parts.UploadNotFound):
        parts.status(storage, old)
    assert [p.number for p in parts.status(storage, live).parts] == [1]
    assert not storage.exists("scans/old.tif")


def test_a_part_arriving_keeps_an_upload_alive(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    upload_id = _upload(storage, tmp_path, "scans/a.tif")
    started = float(storage.get_bytes(f"{parts.PREFIX}{upload_id}/touched"))
    assert parts.sweep(storage, 3600, now=started + 3599) == []
    assert parts.status(storage, upload_id).parts_total == 2
    assert parts.sweep(storage, 3600, now=started + 3600) == [upload_id]


def test_sweep_marks_an_upload_without_a_mark_and_removes_it_a_period_later(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put_bytes(f"{parts.PREFIX}{'a' * 32}/00001", b"left over")
    storage.put_bytes("uploads-other/x", b"not an upload")
    assert parts.sweep(storage, 100, now=1000.0) == []
    assert storage.exists(f"{parts.PREFIX}{'a' * 32}/00001")
    assert parts.sweep(storage, 100, now=1099.0) == []
    assert parts.sweep(storage, 100, now=1100.0) == ["a" * 32]
    assert list(storage.list(parts.PREFIX)) == []
    assert storage.get_bytes("uploads-other/x") == b"not an upload"


def test_the_worker_heartbeat_runs_the_sweep_with_the_configured_threshold(tmp_path: Path) -> None:
    engine.import_workflows()
    from modelyard.artifacts.workflows import sweep_abandoned_uploads

    assert sweep_abandoned_uploads in engine.TICKS
    storage = LocalStorage(tmp_path / "store")
    upload_id = _upload(storage, tmp_path, "scans/b.tif")
    parts._touch(storage, upload_id, time.time() - 2 * 3600)
    settings = Settings(data_dir=tmp_path, upload_abandon_hours=3, _env_file=None)  # type: ignore[call-arg]
    ctx = SimpleNamespace(storage=storage, settings=settings)
    sweep_abandoned_uploads(ctx)  # type: ignore[arg-type]
    assert len(_keys(storage, upload_id)) == 3
    settings = Settings(data_dir=tmp_path, upload_abandon_hours=1, _env_file=None)  # type: ignore[call-arg]
    sweep_abandoned_uploads(SimpleNamespace(storage=storage, settings=settings))  # type: ignore[arg-type]
    assert _keys(storage, upload_id) == []
    with pytest.raises(NotFound):
        storage.get_bytes(f"{parts.PREFIX}{upload_id}/upload.json")
