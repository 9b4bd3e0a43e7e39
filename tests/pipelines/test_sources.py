"""Raw data locations: parsed on submission, read once when the raw stage runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.errors import BadRequest, FetchFailed, PayloadTooLarge
from modelyard.pipelines.stages.sources import Source, parse_source, read_file, read_source
from modelyard.settings import Settings
from modelyard.storage import MemoryStorage


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("https://example.org/a.jpg", "http", "https://example.org/a.jpg"),
        ("artifact://scans/1.tif", "artifact", "scans/1.tif"),
        ("in/a.png", "file", "{root}/in/a.png"),
        ("{root}/in/a.png", "file", "{root}/in/a.png"),
        ("file://{root}/in/b.png", "file", "{root}/in/b.png"),
    ],
)
def test_locations_that_are_read(tmp_path: Path, text: str, kind: str, value: str) -> None:
    root = str(tmp_path.resolve())
    got = parse_source(text.format(root=root), data_dir=tmp_path)
    assert got == Source(kind, value.format(root=root))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "../outside.png",
        "/etc/passwd",
        "s3://bucket/key",
        "ftp://h/x",
        "artifact://../x",
        "http://",
        "a\x00b",
    ],
)
def test_locations_that_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_source(text, data_dir=tmp_path)
    assert info.value.field == "source"


def test_reading_files_and_artifacts_with_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, fetch_max_bytes=10, _env_file=None)  # type: ignore[call-arg]
    store = MemoryStorage()
    store.put_bytes("k/1", b"12345")
    (tmp_path / "f").write_bytes(b"abc")
    (tmp_path / "big").write_bytes(b"x" * 11)
    import httpx

    with httpx.Client() as client:
        assert (
            read_source(Source("artifact", "k/1"), settings=settings, storage=store, client=client).data
            == b"12345"
        )
        assert (
            read_source(
                Source("file", str(tmp_path / "f")), settings=settings, storage=store, client=client
            ).data
            == b"abc"
        )
        with pytest.raises(FetchFailed) as missing:
            read_source(
                Source("file", str(tmp_path / "nope")), settings=settings, storage=store, client=client
            )
        assert missing.value.extra["upstream_status"] == 404
        with pytest.raises(FetchFailed):
            read_source(Source("artifact", "k/2"), settings=settings, storage=store, client=client)
        with pytest.raises(PayloadTooLarge):
            read_source(
                Source("file", str(tmp_path / "big")), settings=settings, storage=store, client=client
            )


def test_a_symlink_out_of_the_data_dir_is_refused_when_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret").write_text("s")
    source = parse_source("link", data_dir=data)
    (data / "link").symlink_to(tmp_path / "secret")
    settings = Settings(data_dir=data, _env_file=None)  # type: ignore[call-arg]
    import httpx

    with httpx.Client() as client, pytest.raises(BadRequest, match="outside the data dir"):
        read_source(source, settings=settings, storage=MemoryStorage(), client=client)


def test_read_file_reads_data_dir_paths_as_read_source_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    (data / "in" / "a.png").write_bytes(b"abc")
    (data / "big").write_bytes(b"x" * 11)
    settings = Settings(data_dir=data, fetch_max_bytes=10, _env_file=None)  # type: ignore[call-arg]
    root = str(data.resolve())
    for text in ("in/a.png", f"{root}/in/a.png", f"file://{root}/in/a.png"):
        got = read_file(text, settings=settings)
        assert got is not None and got.data == b"abc"
    assert read_file("big", settings=settings, stream_above=5) is None  # read by chunks instead
    with pytest.raises(PayloadTooLarge):
        read_file("big", settings=settings)
    with pytest.raises(FetchFailed) as missing:
        read_file("in/nope.png", settings=settings)
    assert missing.value.extra["upstream_status"] == 404
    with pytest.raises(FetchFailed, match="is a folder"):
        read_file("in", settings=settings)  # a folder is no file


def test_read_file_neither_waits_on_nor_reads_a_fifo_in_or_out_of_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "pipe")  # no writer: a blocking open would wait for ever
    os.mkfifo(tmp_path / "outside")
    (data / "link").symlink_to(tmp_path / "outside")
    settings = Settings(data_dir=data, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(FetchFailed, match="is not a regular file") as fifo:
        read_file("pipe", settings=settings)
    assert fifo.value.field == "source" and fifo.value.extra["upstream_status"] == 404
    with pytest.raises(BadRequest, match="outside the data dir"):
        read_file("link", settings=settings)


@pytest.mark.parametrize("text", ["../secret", "link", "{root}/../secret", "artifact://k/1", ""])
def test_read_file_refuses_what_is_not_a_file_inside_the_data_dir(tmp_path: Path, text: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret").write_text("s")
    (data / "link").symlink_to(tmp_path / "secret")
    settings = Settings(data_dir=data, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(BadRequest) as info:
        read_file(text.format(root=data.resolve()), settings=settings)
    assert info.value.field == "source"
