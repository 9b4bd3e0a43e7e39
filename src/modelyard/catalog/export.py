"""Export a whole collection, or every hit of a search, with each record's current inferences, as JSONL or
Parquet, streamed: records are read a page at a time (keyset pages for a collection, the search's own
cursor pages for a search) and written out as they come, so memory stays bounded by one page whatever the
size. The first page is read before anything is sent, so a bad query is a 4xx, not a broken stream.
No FastAPI, no DBOS."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import orjson
import pyarrow as pa

from modelyard.catalog import search, service
from modelyard.catalog.schemas import RecordPublic, SearchQuery
from modelyard.context import AppContext
from modelyard.errors import BadRequest
from modelyard.jobs import outputs

PAGE = 500
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("source", pa.string()),
        ("content_hash", pa.string()),
        ("attributes", pa.string()),  # JSON: free-form per record
        ("inferred", pa.string()),  # JSON: producer -> current values
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def check_format(fmt: str) -> str:
    """``BadRequest`` (field ``format``) for a format other than jsonl or parquet."""
    if fmt not in MEDIA_TYPES:
        raise BadRequest(f"unknown export format {fmt!r} (jsonl or parquet)", field="format")
    return fmt


def _collection_pages(ctx: AppContext, collection: str) -> Iterator[list[RecordPublic]]:
    cursor = None
    while True:
        page = service.list_records(ctx, collection, cursor=cursor, limit=PAGE)
        yield page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _search_pages(ctx: AppContext, collection: str, query: SearchQuery) -> Iterator[list[RecordPublic]]:
    query = query.model_copy(update={"limit": PAGE, "cursor": None})
    while True:
        result = search.search(ctx, collection, query)
        yield [hit.record for hit in result.hits]
        if result.next_cursor is None:
            return
        query = query.model_copy(update={"cursor": result.next_cursor})


def export(ctx: AppContext, collection: str, fmt: str, query: SearchQuery | None = None) -> Iterator[bytes]:
    """The export as chunks of bytes; the first page is already read (its errors raised) on return."""
    check_format(fmt)
    pages = _collection_pages(ctx, collection) if query is None else _search_pages(ctx, collection, query)
    first = next(pages)
    everything = chain([first], pages)
    return _jsonl(everything) if fmt == "jsonl" else _parquet(everything)


def _jsonl(pages: Iterator[list[RecordPublic]]) -> Iterator[bytes]:
    for page in pages:
        if page:
            yield b"".join(orjson.dumps(r.model_dump(mode="json")) + b"\n" for r in page)


def _row(record: RecordPublic) -> dict[str, Any]:
    return {
        "id": record.id,
        "title": record.title,
        "description": record.description,
        "source": record.source,
        "content_hash": record.content_hash,
        "attributes": orjson.dumps(record.attributes).decode(),
        "inferred": orjson.dumps(record.inferred).decode(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _parquet(pages: Iterator[list[RecordPublic]]) -> Iterator[bytes]:
    # one row group a page, written as it comes (the first page even when empty: a valid empty file)
    tables = (pa.Table.from_pylist([_row(r) for r in page], schema=SCHEMA) for page in pages)
    return outputs.stream(tables, "parquet")
