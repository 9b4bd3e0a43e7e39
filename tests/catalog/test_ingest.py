"""Bulk ingest: JSONL, CSV and Parquet streamed in, upsert by id, a per-line report, nothing half-written;
and ``modelyard catalog ingest`` with a live server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.catalog.ingest import MAX_LINE_BYTES
from modelyard.cli import app
from modelyard.settings import Settings
from tests.catalog.conftest import make_collection
from tests.conftest import ADMIN_KEY, LiveServer

BULK = "/api/v1/collections/works/records:bulk"
JSONL = {"Content-Type": "application/x-ndjson"}


def jsonl(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def ids(api: Any) -> list[str]:
    return [r["id"] for r in api.get("/api/v1/collections/works/records").json()["items"]]


def test_jsonl_good_lines_land_and_bad_lines_are_reported_by_line_and_field(api: Any) -> None:
    make_collection(api)
    body = jsonl(
        {"id": "a", "title": "one", "attributes": {"year": 1900}},
        b"{not json",
        {"id": "b", "title": 7},
        {"id": "c", "source": "ftp://elsewhere/x.png"},
        {"id": "a", "title": "again"},
        {"title": "no id"},
        [1, 2],
        {"id": "d", "surprise": True},
        {"id": "e", "content_hash": "abc"},
        {"id": "f", "description": "fine"},
    )
    resp = api.post(BULK, content=body, headers=JSONL)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert (report["lines"], report["created"], report["rejected"]) == (10, 2, 8)
    got = {e["line"]: (e["field"], e["detail"]) for e in report["errors"]}
    assert got[2][0] is None and "not valid JSON" in got[2][1]
    assert got[3][0] == "title"
    assert got[4][0] == "source" and "ftp" in got[4][1]
    assert got[5][0] == "id" and "repeated in this file (first on line 1)" in got[5][1]
    assert got[6][0] == "id"
    assert "JSON object" in got[7][1]
    assert got[8][0] == "surprise"
    assert got[9][0] == "content_hash"
    assert ids(api) == ["a", "f"]
    assert api.get("/api/v1/collections/works/records/a").json()["title"] == "one"  # not the repeat


def test_ingest_upserts_by_id_and_counts_unchanged_lines(api: Any) -> None:
    make_collection(api)
    first = api.post(BULK, content=jsonl({"id": "a", "title": "x"}, {"id": "b"}), headers=JSONL).json()
    assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
    second = api.post(BULK, content=jsonl({"id": "a", "title": "y"}, {"id": "b"}), headers=JSONL).json()
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 1, 1)
    assert api.get("/api/v1/collections/works/records/a").json()["title"] == "y"


def test_a_file_whose_every_line_is_bad_is_422_listing_each_line(api: Any) -> None:
    make_collection(api)
    resp = api.post(BULK, content=jsonl({"id": "a", "title": 1}, {"id": ""}), headers=JSONL)
    assert resp.status_code == 422
    assert [e["line"] for e in resp.json()["errors"]] == [1, 2]
    assert ids(api) == []


def test_unknown_format_is_415_naming_the_format(api: Any) -> None:
    make_collection(api)
    resp = api.post(BULK, content=b"id\na\n", headers={"Content-Type": "application/x-yaml"})
    assert resp.status_code == 415 and resp.json()["field"] == "format"
    resp = api.post(BULK, params={"format": "xlsx"}, content=b"id\na\n")
    assert resp.status_code == 415 and "xlsx" in resp.json()["detail"]
    assert ids(api) == []


def test_ingest_into_a_missing_collection_is_404(api: Any) -> None:
    resp = api.post(BULK, content=jsonl({"id": "a"}), headers=JSONL)
    assert resp.status_code == 404 and resp.json()["code"] == "collection-not-found"


def test_an_overlong_line_is_rejected_and_the_next_line_still_lands(api: Any) -> None:
    make_collection(api)
    long = json.dumps({"id": "big", "description": "x" * (MAX_LINE_BYTES + 10)}).encode()
    resp = api.post(BULK, content=jsonl(long, {"id": "after"}), headers=JSONL)
    report = resp.json()
    assert report["errors"][0]["line"] == 1 and report["created"] == 1
    assert ids(api) == ["after"]


def test_streamed_body_in_small_chunks_is_parsed_across_chunk_edges(api: Any) -> None:
    make_collection(api)
    body = jsonl(*({"id": f"r{i}", "title": "é" * 7} for i in range(1200)))

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    report = api.post(BULK, content=chunks(), headers=JSONL).json()
    assert report["created"] == 1200 and report["rejected"] == 0
    assert api.get("/api/v1/collections/works/records/r1199").json()["title"] == "é" * 7


def test_csv_columns_become_fields_and_typed_attributes(api: Any) -> None:
    make_collection(api)
    body = (
        b"id,title,description,year,artist.name,attributes\n"
        b'a,Sunflowers,"a vase,\nwith flowers",1888,Gogh,"{""room"": 3}"\n'
        b"b,Night,,1889.5,Gogh,\n"
        b"a,Repeat,,1,x,\n"
    )
    report = api.post(BULK, content=body, headers={"Content-Type": "text/csv"}).json()
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["errors"][0]["field"] == "id"
    a = api.get("/api/v1/collections/works/records/a").json()
    assert a["description"] == "a vase,\nwith flowers"
    assert a["attributes"] == {"room": 3, "year": 1888, "artist": {"name": "Gogh"}}
    assert api.get("/api/v1/collections/works/records/b").json()["attributes"]["year"] == 1889.5


def test_parquet_rows_land_with_native_types(api: Any) -> None:
    make_collection(api)
    table = pa.table({"id": ["a", "b", "a"], "title": ["x", "y", "z"], "year": [1888, 1889, 1]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    report = api.post(BULK, params={"format": "parquet"}, content=buf.getvalue()).json()
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["errors"][0]["line"] == 3
    assert api.get("/api/v1/collections/works/records/b").json()["attributes"] == {"year": 1889}


def test_csv_cells_that_cannot_nest_or_bad_attributes_are_line_errors(api: Any) -> None:
    make_collection(api)
    body = b'id,a,a.b,attributes\nx,1,2,\ny,,,"[1]"\nz,,,"{bad"\nok,1,,\n'
    report = api.post(BULK, content=body, headers={"Content-Type": "text/csv"}).json()
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (2, "a.b"),
        (3, "attributes"),
        (4, "attributes"),
    ]
    assert ids(api) == ["ok"]


def test_parquet_dates_are_stored_as_iso_strings_and_decimals_are_line_errors(api: Any) -> None:
    import datetime as dt
    import decimal

    make_collection(api)
    table = pa.table(
        {
            "id": ["a", "b"],
            "made": [dt.date(1888, 8, 1), dt.date(1889, 1, 1)],
            "price": pa.array([None, decimal.Decimal("1.50")], type=pa.decimal128(5, 2)),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    report = api.post(BULK, params={"format": "parquet"}, content=buf.getvalue()).json()
    assert report["created"] == 1 and report["errors"][0]["line"] == 2
    assert report["errors"][0]["field"] == "attributes"
    assert api.get("/api/v1/collections/works/records/a").json()["attributes"] == {"made": "1888-08-01"}


def test_a_parquet_body_over_the_cap_is_413_and_nothing_lands(api: Any) -> None:
    make_collection(api)
    table = pa.table({"id": [f"r{i}" for i in range(100)], "title": ["x" * 50] * 100})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    api.ctx.settings = api.ctx.settings.model_copy(update={"max_batch_file_bytes": 1000})
    resp = api.post(BULK, params={"format": "parquet"}, content=buf.getvalue())
    assert resp.status_code == 413 and "1000-byte limit" in resp.json()["detail"]
    assert ids(api) == []


def test_a_body_that_is_not_parquet_is_400(api: Any) -> None:
    make_collection(api)
    resp = api.post(BULK, params={"format": "parquet"}, content=b"not parquet at all")
    assert resp.status_code == 400 and resp.json()["field"] == "body"


@pytest.fixture
def server(private_settings: Settings) -> Iterator[Any]:
    application = create_app(private_settings)
    with LiveServer(application) as live:
        yield live


def test_cli_ingest_streams_a_file_and_reports_rejected_lines(server: Any, tmp_path: Path) -> None:
    import httpx

    httpx.post(
        f"{server.url}/api/v1/collections",
        json={"name": "works"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ).raise_for_status()
    path = tmp_path / "works.jsonl"
    path.write_bytes(jsonl(*({"id": f"r{i}"} for i in range(50)), {"id": "r1"}))
    args = [
        "catalog",
        "ingest",
        str(path),
        "--collection",
        "works",
        "--url",
        server.url,
        "--api-key",
        ADMIN_KEY,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "50 created" in result.output and "1 rejected" in result.output
    assert "line 51: id" in result.output
    query = json.dumps({"filter": {"field": "id", "value": "r7"}, "inferred": []})
    found = CliRunner().invoke(
        app, ["catalog", "search", "works", query, "--url", server.url, "--api-key", ADMIN_KEY]
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)["hits"][0]["record"]["id"] == "r7"
    bad = CliRunner().invoke(
        app,
        [
            "catalog",
            "search",
            "works",
            '{"filter": {"field": "nope"}}',
            "--url",
            server.url,
            "--api-key",
            ADMIN_KEY,
        ],
    )
    assert bad.exit_code == 1 and "unknown field" in bad.output
