"""Export a collection or a search's hits with their inferences as JSONL or Parquet, streamed a page at a
time; a bad format or query is refused before anything is sent."""

from __future__ import annotations

import io
import json
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from modelyard.catalog import export
from tests.catalog.conftest import WITH_PGVECTOR, make_collection

C = "/api/v1/collections/works"
pytestmark = WITH_PGVECTOR


@pytest.fixture
def works(api: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Seven records, each with a vector and a label inferred; pages of three."""
    monkeypatch.setattr(export, "PAGE", 3)
    make_collection(api)
    lines = [{"id": f"w{i}", "title": f"work {i}", "attributes": {"year": 1900 + i}} for i in range(7)]
    body = "\n".join(json.dumps(x) for x in lines).encode()
    assert api.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"}).status_code == 200
    for i in range(7):
        values = {"label": "even" if i % 2 == 0 else "odd", "embedding": [float(i)] * 16}
        resp = api.put(f"{C}/records/w{i}/inferences/tagger/1", json=values)
        assert resp.status_code == 204
    return api


def test_a_collection_exports_as_jsonl_with_current_inferences(works: Any) -> None:
    resp = works.get(f"{C}/export")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-ndjson"
    rows = [orjson.loads(line) for line in resp.content.splitlines()]
    assert [r["id"] for r in rows] == [f"w{i}" for i in range(7)]
    assert rows[3]["attributes"] == {"year": 1903}
    assert rows[3]["inferred"]["tagger"] == {"label": "odd", "embedding": [3.0] * 16}


def test_a_collection_exports_as_parquet_one_row_group_a_page(works: Any) -> None:
    resp = works.get(f"{C}/export", params={"format": "parquet"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/vnd.apache.parquet"
    parquet = pq.ParquetFile(io.BytesIO(resp.content))
    assert parquet.metadata.num_row_groups == 3  # 3 + 3 + 1: written as the pages came
    table = parquet.read().to_pylist()
    assert [r["id"] for r in table] == [f"w{i}" for i in range(7)]
    assert json.loads(table[4]["inferred"])["tagger"]["label"] == "even"
    assert json.loads(table[4]["attributes"]) == {"year": 1904}


def test_a_search_exports_every_hit_across_pages(works: Any) -> None:
    query = {"filter": {"field": "tagger.label", "value": "even"}, "limit": 1}
    resp = works.post(f"{C}/export", json=query)
    assert resp.status_code == 200
    assert [orjson.loads(x)["id"] for x in resp.content.splitlines()] == ["w0", "w2", "w4", "w6"]
    nearest = {"vector": {"field": "tagger.embedding", "vector": [5.0] * 16, "metric": "l2", "k": 2}}
    got = works.post(f"{C}/export", json=nearest, params={"format": "parquet"})
    assert [r["id"] for r in pq.read_table(io.BytesIO(got.content)).to_pylist()] == ["w5", "w4"]


def test_the_export_is_read_a_page_at_a_time(works: Any) -> None:
    chunks = export.export(works.ctx, "works", "jsonl")
    first = next(chunks)
    assert first.count(b"\n") == 3  # one page read, not the collection
    assert sum(c.count(b"\n") for c in chunks) == 4


@pytest.mark.parametrize(
    ("method", "params", "body", "status", "field"),
    [
        ("GET", {"format": "csv"}, None, 400, "format"),
        ("POST", {}, {"filter": {"field": "nope", "value": 1}}, 400, "filter.field"),
        (
            "POST",
            {},
            {"vector": {"field": "tagger.embedding", "vector": [1.0], "k": 2}},
            400,
            "vector.vector",
        ),
    ],
)
def test_bad_exports_are_refused_before_anything_is_sent(
    works: Any, method: str, params: dict[str, str], body: Any, status: int, field: str
) -> None:
    resp = works.request(method, f"{C}/export", params=params, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["field"] == field
    assert works.get("/api/v1/collections/nope/export").status_code == 404
