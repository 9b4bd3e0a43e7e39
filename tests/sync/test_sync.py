"""``modelyard sync``: settled files stored through the resumable parts API (local store and a real S3
server process) and submitted as events; a re-run skips them; an interrupted upload resumes with the parts
that were missing; a file still being written is not taken; bad parts are refused."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.client import Client
from modelyard.settings import Settings
from modelyard.sync.folder import Seen, Settler
from modelyard.sync.run import Sync, sync_once
from tests.conftest import ADMIN_KEY

PART = 64 * 1024
SPEC = 'name: scans\nraw: bytes\nstages:\n  size: {type: python, callable: "tests.pipelines.stages:size"}\n'


def _client(settings: Settings) -> Iterator[tuple[Client, TestClient, list[str]]]:
    """A modelyard ``Client`` over an in-process app, with the pipeline applied; the list records every
    request as ``METHOD path``."""
    sent: list[str] = []
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        http.event_hooks["request"] = [lambda r: sent.append(f"{r.method} {r.url.path}")]
        http.post("/api/v1/pipelines", content=SPEC, headers={"Content-Type": "application/yaml"})
        client = Client("http://testserver")
        client.http.close()
        client.http = http
        yield client, http, sent


@pytest.fixture
def local(settings: Settings) -> Iterator[tuple[Client, TestClient, list[str]]]:
    yield from _client(settings)


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, settings: Settings
) -> Iterator[tuple[Client, TestClient, list[str]]]:
    """The app on the local store, then on a real S3-compatible server process."""
    if request.param == "local":
        yield from _client(settings)
        return
    from tests.s3server import BUCKET

    endpoint = request.getfixturevalue("s3_env")
    s3 = settings.model_copy(update={"storage_url": f"s3://{BUCKET}/sync-test", "s3_endpoint_url": endpoint})
    yield from _client(s3)


def write(folder: Path, rel: str, size: int, seed: int = 0) -> bytes:
    data = os.urandom(size) if seed < 0 else bytes((i * 7 + seed) % 251 for i in range(size))
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def events(http: TestClient) -> dict[str, str]:
    """Each event of the pipeline: its name and its source."""
    got = http.get("/api/v1/pipelines/scans/events").json()
    return {e["name"]: http.get(f"/api/v1/events/{e['id']}").json()["source"] for e in got["items"]}


def test_files_are_stored_in_parts_and_submitted_once(
    store: tuple[Client, TestClient, list[str]], tmp_path: Path
) -> None:
    client, http, sent = store
    scans = tmp_path / "scans"
    big = write(scans, "slide-1.ome.tif", 3 * PART + 100)
    small = write(scans, "run2/notes.txt", 10, seed=3)
    job = Sync(client, scans, "scans", part_size=PART)
    report = sync_once(job, 0.0, sleep=lambda s: None)
    assert sorted(report.stored) == ["run2/notes.txt", "slide-1.ome.tif"]
    assert report.bytes_sent == len(big) + len(small)
    assert sum(s.startswith("PUT /api/v1/artifacts/uploads/") for s in sent) == 5  # 4 parts + 1

    sha = hashlib.sha256(big).hexdigest()
    key = f"sync/{sha[:12]}/slide-1.ome.tif"
    assert http.get(f"/api/v1/artifacts/{key}").content == big
    assert events(http)[f"slide-1.ome.tif@{sha[:12]}"] == f"artifact://{key}"
    assert http.get("/api/v1/artifacts", params={"prefix": "uploads/"}).json()["items"] == []

    sent.clear()
    again = sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    assert again.stored == [] and sorted(again.skipped) == ["run2/notes.txt", "slide-1.ome.tif"]
    assert not any("/uploads" in s or "/events" in s for s in sent)  # the state file says all is done


def test_a_changed_file_is_a_new_object_and_event(
    local: tuple[Client, TestClient, list[str]], tmp_path: Path
) -> None:
    client, http, _ = local
    scans = tmp_path / "scans"
    write(scans, "a.bin", 1000)
    sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    write(scans, "a.bin", 1000, seed=9)
    report = sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    assert report.stored == ["a.bin"] and report.submitted == ["a.bin"]
    assert len(events(http)) == 2


def test_without_the_state_file_stored_files_are_not_sent_again(
    local: tuple[Client, TestClient, list[str]], tmp_path: Path
) -> None:
    client, _, sent = local
    scans = tmp_path / "scans"
    write(scans, "a.bin", 2 * PART)
    sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    (scans / ".modelyard-sync.json").unlink()
    sent.clear()
    report = sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    assert report.skipped == ["a.bin"] and report.submitted == []  # the event exists: not run again
    assert not any(s.startswith("PUT") for s in sent)


def test_an_interrupted_upload_resumes_with_the_missing_parts(
    store: tuple[Client, TestClient, list[str]], tmp_path: Path
) -> None:
    client, http, sent = store
    scans = tmp_path / "scans"
    data = write(scans, "big.tif", 5 * PART + 17, seed=-1)

    def cut(req: httpx.Request) -> None:
        sent.append(f"{req.method} {req.url.path}")
        if req.url.path.endswith("/parts/4"):
            raise httpx.ConnectError("link down")

    http.event_hooks["request"] = [cut]
    with pytest.raises(httpx.ConnectError):
        sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    assert [s.rsplit("/", 1)[1] for s in sent if "/parts/" in s] == ["1", "2", "3", "4"]
    assert "upload_id" in (scans / ".modelyard-sync.json").read_text()

    sent.clear()
    http.event_hooks["request"] = [lambda r: sent.append(f"{r.method} {r.url.path}")]
    report = sync_once(Sync(client, scans, "scans", part_size=PART), 0.0, sleep=lambda s: None)
    assert report.stored == ["big.tif"] and report.bytes_sent == len(data)  # 3 parts sent, 3 skipped
    assert [s.rsplit("/", 1)[1] for s in sent if "/parts/" in s] == ["4", "5", "6"]
    sha = hashlib.sha256(data).hexdigest()
    assert http.get(f"/api/v1/artifacts/sync/{sha[:12]}/big.tif").content == data


def test_a_file_still_being_written_is_not_taken_until_it_settles() -> None:
    now = [0.0]
    settler = Settler(2.0, clock=lambda: now[0])
    assert settler.update({"a": Seen(10, 1)}) == []
    now[0] = 1.5
    assert settler.update({"a": Seen(20, 2)}) == []  # grew: the clock starts again
    now[0] = 3.0
    assert settler.update({"a": Seen(20, 2)}) == []  # 1.5 s unchanged
    assert settler.pending() == ["a"]
    now[0] = 3.6
    assert settler.update({"a": Seen(20, 2), "b": Seen(1, 1)}) == ["a"]
    assert settler.pending() == ["b"]


def test_sync_once_leaves_a_growing_file_for_the_next_run(
    local: tuple[Client, TestClient, list[str]], tmp_path: Path
) -> None:
    client, _, _ = local
    scans = tmp_path / "scans"
    write(scans, "done.bin", 100)
    write(scans, "growing.bin", 100)

    def scanner_writes(seconds: float) -> None:  # the scanner appends during the settle period
        with (scans / "growing.bin").open("ab") as f:
            f.write(b"more")

    report = sync_once(Sync(client, scans, "scans", part_size=PART), 1.0, sleep=scanner_writes)
    assert report.stored == ["done.bin"] and report.unsettled == ["growing.bin"]


def _start(http: TestClient, size: int, **extra: object) -> dict[str, object]:
    body = {"key": "scans/x.bin", "size": size, "sha256": "0" * 64, "part_size": PART} | extra
    resp = http.post("/api/v1/artifacts/uploads", json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, object] = resp.json()
    return result


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_bad_parts_and_uploads_are_refused(local: tuple[Client, TestClient, list[str]]) -> None:
    _, http, _ = local
    up = _start(http, PART + 10)
    url = f"/api/v1/artifacts/uploads/{up['id']}/parts"
    part = b"x" * PART
    r = http.put(f"{url}/1", content=part, headers={"Content-MD5": _md5(b"other")})
    assert r.status_code == 400 and r.json()["field"] == "Content-MD5"
    r = http.put(f"{url}/1", content=part[:-1], headers={"Content-MD5": _md5(part[:-1])})
    assert r.status_code == 400 and "it must have 65536" in r.json()["detail"]
    r = http.put(f"{url}/3", content=b"x", headers={"Content-MD5": _md5(b"x")})
    assert r.status_code == 400 and r.json()["field"] == "number"
    assert http.put(f"{url}/1", content=part, headers={"Content-MD5": _md5(part)}).status_code == 200
    r = http.post(f"/api/v1/artifacts/uploads/{up['id']}/complete")
    assert r.status_code == 409 and r.json()["missing"] == [2]
    http.put(f"{url}/2", content=b"y" * 10, headers={"Content-MD5": _md5(b"y" * 10)})
    r = http.post(f"/api/v1/artifacts/uploads/{up['id']}/complete")  # declared sha256 is all zeros
    assert r.status_code == 400 and r.json()["field"] == "sha256"
    assert http.get("/api/v1/artifacts/scans/x.bin").status_code == 404  # nothing half-written
    assert http.get(f"/api/v1/artifacts/uploads/{up['id']}").status_code == 404  # dropped

    for body, field in [
        ({"key": "models/x"}, "key"),
        ({"part_size": 10}, "part_size"),
        ({"sha256": "z"}, "sha256"),
    ]:
        r = http.post("/api/v1/artifacts/uploads", json={"key": "a/b", "size": 1, "sha256": "0" * 64} | body)
        assert r.status_code == 400 and r.json()["field"] == field
    r = http.post("/api/v1/artifacts/uploads", json={"key": "a/b", "size": 10**15, "sha256": "0" * 64})
    assert r.status_code == 413


def test_uploads_need_a_write_key(local: tuple[Client, TestClient, list[str]]) -> None:
    _, http, _ = local
    r = http.post(
        "/api/v1/artifacts/uploads",
        json={"key": "a/b", "size": 1, "sha256": "0" * 64},
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401
