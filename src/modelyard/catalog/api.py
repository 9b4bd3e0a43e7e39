"""Catalog routes: ``/api/v1/collections`` (collections, records, bulk ingest, inferences, search)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Body, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.catalog import binding, content, export, ingest, search, service, versions
from modelyard.catalog.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    CollectionUpdate,
    ContentInferences,
    InferenceList,
    IngestReport,
    ProducerVersionPublic,
    RecordCreate,
    RecordList,
    RecordPublic,
    RecordUpdate,
    ReinferencePublic,
    SearchQuery,
    SearchResult,
    VersionList,
    VersionSwitch,
)
from modelyard.deps import Ctx, PredictKey, ReadKey, WriteKey
from modelyard.errors import BadRequest, InvalidQuery, ValidationFailed
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/collections", tags=["catalog"])
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.post("", response_model=CollectionPublic, status_code=status.HTTP_201_CREATED)
def create_collection(data: CollectionCreate, ctx: Ctx, _: WriteKey) -> CollectionPublic:
    """Create a collection, optionally bound to pipelines (each new or changed record becomes an event of
    each). `409` when the name is taken, `404` for a pipeline that does not exist."""
    return service.create_collection(ctx, data)


@router.get("", response_model=CollectionList)
def list_collections(
    ctx: Ctx, _: ReadKey, offset: Annotated[int, Query(ge=0)] = 0, limit: Limit = 100
) -> CollectionList:
    """Collections by name, each with its record count and bound pipelines."""
    return service.list_collections(ctx, offset=offset, limit=limit)


@router.get("/{collection}", response_model=CollectionPublic)
def get_collection(collection: str, ctx: Ctx, _: ReadKey) -> CollectionPublic:
    """One collection."""
    return service.get_collection_public(ctx, collection)


@router.patch("/{collection}", response_model=CollectionPublic)
def update_collection(collection: str, data: CollectionUpdate, ctx: Ctx, _: WriteKey) -> CollectionPublic:
    """Change a collection's description or the pipelines it is bound to (the full list)."""
    return service.update_collection(ctx, collection, data)


@router.delete("/{collection}", status_code=status.HTTP_204_NO_CONTENT)
def delete_collection(collection: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete a collection, its records and their inferences (pipeline events stay with their pipeline)."""
    service.delete_collection(ctx, collection)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{collection}/records", response_model=RecordList)
def list_records(
    collection: str, ctx: Ctx, _: ReadKey, cursor: str | None = None, limit: Limit = 100
) -> RecordList:
    """Records in the order they were first stored, a page at a time; pass `next_cursor` back as
    `cursor` for the next page (stable while records are added or changed)."""
    return service.list_records(ctx, collection, cursor=cursor, limit=limit)


@router.post("/{collection}/records", response_model=RecordPublic, status_code=status.HTTP_201_CREATED)
def create_record(
    collection: str, data: RecordCreate, response: Response, ctx: Ctx, _: WriteKey
) -> RecordPublic:
    """Create a record, or replace the one with that id (`200`). A new record with a source, or one whose
    content hash changed, becomes an event of each bound pipeline. A bad source is a `400`."""
    public, written = service.put_record(ctx, collection, data)
    if written.outcome != "created":
        response.status_code = status.HTTP_200_OK
    return public


@router.get("/{collection}/records/{record_id}", response_model=RecordPublic)
def get_record(collection: str, record_id: str, ctx: Ctx, _: ReadKey) -> RecordPublic:
    """A record with the current version's inferred values, by producer."""
    return service.get_record(ctx, collection, record_id)


@router.put("/{collection}/records/{record_id}", response_model=RecordPublic)
def put_record(collection: str, record_id: str, data: RecordCreate, ctx: Ctx, _: WriteKey) -> RecordPublic:
    """Create or replace a record; the id in the body must be the id in the path."""
    if data.id != record_id:
        raise BadRequest(f"the body's id {data.id!r} is not the path's {record_id!r}", field="id")
    return service.put_record(ctx, collection, data)[0]


@router.patch("/{collection}/records/{record_id}", response_model=RecordPublic)
def update_record(collection: str, record_id: str, data: RecordUpdate, ctx: Ctx, _: WriteKey) -> RecordPublic:
    """Change some fields of a record (a changed content hash runs it through the pipelines again)."""
    return service.update_record(ctx, collection, record_id, data)


@router.delete("/{collection}/records/{record_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_record(collection: str, record_id: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete a record and its inferences."""
    service.delete_record(ctx, collection, record_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{collection}/records/{record_id}/inferences", response_model=InferenceList)
def record_inferences(collection: str, record_id: str, ctx: Ctx, _: ReadKey) -> InferenceList:
    """Every inference of a record: each producer at each version, current or older, newest first."""
    return service.record_inferences(ctx, collection, record_id)


@router.post("/{collection}/records/{record_id}/infer", status_code=status.HTTP_202_ACCEPTED)
def infer_record(collection: str, record_id: str, ctx: Ctx, _: WriteKey) -> dict[str, list[str]]:
    """Run a record through every bound pipeline now; answers the events started (their outputs become
    inferences when they finish). `409` when the record has no source or no pipeline is bound."""
    return {"events": binding.infer_now(ctx, collection, record_id)}


BULK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "example": '{"id": "w1", "title": "Sunflowers", "attributes": {"year": 1888}}\n',
            },
            "text/csv": {"schema": {"type": "string"}, "example": "id,title,year\nw1,Sunflowers,1888\n"},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("/{collection}/records:bulk", response_model=IngestReport, openapi_extra=BULK_BODY)
async def bulk_ingest(
    collection: str,
    request: Request,
    ctx: Ctx,
    _: WriteKey,
    format: Annotated[
        str | None, Query(description="jsonl, csv or parquet (default: by Content-Type)")
    ] = None,
) -> IngestReport:
    """Upsert records by id from a JSONL, CSV or Parquet body, read as it streams in. Each line is checked
    whole before any of it is written; the good lines land and every bad one is listed with its line
    number, field and reason (a record id repeated in one file is an error of the later line). CSV and
    Parquet columns other than the record's own become attributes (`a.b` nests). `415` for an unknown
    format; `422` listing every line when no line could be stored."""
    fmt = ingest.pick_format(format, request.headers.get("content-type"))
    stream = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            yield chunk

    def run() -> IngestReport:
        rows = ingest.read_rows(fmt, chunks(), max_parquet_bytes=ctx.settings.max_batch_file_bytes)
        return ingest.ingest(ctx, collection, rows)

    report = await run_in_threadpool(run)
    if report.rejected and report.rejected == report.lines:
        first = report.errors[0]
        raise ValidationFailed(
            f"all {report.lines} lines were rejected; line {first.line}: {first.detail}",
            errors=[e.model_dump() for e in report.errors],
            field=first.field,
        )
    return report


@router.put(
    "/{collection}/records/{record_id}/inferences/{producer}/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
)
def put_inference(
    collection: str,
    record_id: str,
    producer: str,
    version: str,
    values: Annotated[Any, Body()],
    ctx: Ctx,
    _: WriteKey,
) -> Response:
    """Store what a producer outside modelyard's pipelines said about a record (a JSON value: scalars,
    labels, a vector) as that producer's current inference; older versions stay listed. A list of 16 or
    more numbers is a vector, kept as float32; one of another dimension than the same field's vectors at
    that version is a `400` naming it."""
    binding.put_inference(ctx, collection, record_id, producer, version, values)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{collection}/search", response_model=SearchResult)
def search_records(collection: str, query: SearchQuery, ctx: Ctx, _: ReadKey) -> SearchResult:
    """Search a collection. `filter`: conditions on `id`, `title`, `description`, `source`,
    `attributes.<path>` and inferred `<producer>.<path>` fields (`eq`, `ne`, `lt`, `lte`, `gt`, `gte`,
    `in`, `exists`, nested `and` / `or`); `sort` and keyset `cursor` pages; `facets` count values of
    fields over the filtered records. `text` ranks title and description; `vector` finds the exact k
    nearest by a record (itself excluded) or a vector (cosine, dot or L2), among the filtered records
    only; `colour` matches hex colours against palettes. Several rankings are fused by reciprocal rank
    (`weights`), and each hit says why it ranked. Unknown fields, values of the wrong type, vectors of
    the wrong dimension, k over the cap, a malformed cursor or an unknown colour are a `400` naming the
    offending part of the query. `vector.url` searches by an image at a URL, embedded on the fly by the
    field's producer at the version searched (`search:upload` takes the image itself)."""
    if query.vector is not None and query.vector.url is not None:
        data = content.read(ctx, None, query.vector.url)
        query = content.embed_query(ctx, collection, _without_url(query), data, "vector.url")
    return search.search(ctx, collection, query)


def _without_url(query: SearchQuery) -> SearchQuery:
    assert query.vector is not None
    return query.model_copy(update={"vector": query.vector.model_copy(update={"url": None})})


async def _upload(request: Request, ctx: Ctx) -> tuple[bytes, dict[str, list[str]]]:
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/octet-stream"),
        max_bytes=ctx.settings.fetch_max_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
    )
    try:
        return await run_in_threadpool(upload.path.read_bytes), upload.fields
    finally:
        upload.discard()


SEARCH_UPLOAD_BODY = upload_openapi(
    "The image to search by",
    {"query": {"type": "string", "description": "The search as JSON; its vector names only the field"}},
)


@router.post("/{collection}/search:upload", response_model=SearchResult, openapi_extra=SEARCH_UPLOAD_BODY)
async def search_by_upload(collection: str, request: Request, ctx: Ctx, _: ReadKey) -> SearchResult:
    """Search by an uploaded image (multipart: `file`, and `query`, a search as `POST …/search` takes whose
    `vector` names only the `field`): the image is embedded on the fly by the field's producer at the
    version searched, then searched like a vector; stored nowhere. An upload that is not an image is a
    `422`; a missing or bad query a `400` naming it."""
    data, fields = await _upload(request, ctx)
    raw = (fields.get("query") or ["{}"])[-1]
    try:
        query = SearchQuery.model_validate_json(raw)
    except ValueError as exc:
        raise InvalidQuery(f"the query is not a valid search: {exc}", field="query") from None
    query = await run_in_threadpool(content.embed_query, ctx, collection, query, data)
    return await run_in_threadpool(search.search, ctx, collection, query)


INFER_BODY = upload_openapi("The content: an image, or what the collection's inferrers accept")


@router.post("/{collection}/infer", response_model=ContentInferences, openapi_extra=INFER_BODY)
async def infer_content(
    collection: str,
    request: Request,
    ctx: Ctx,
    _: PredictKey,
    url: Annotated[str | None, Query(description="Infer the content at this URL, not an upload")] = None,
) -> ContentInferences:
    """Run content through every inferrer of the collection's bound pipelines on the fly (a model at the
    collection's current version), storing nothing: an uploaded file (multipart `file` or the raw body)
    or `?url=` (fetched bounded; private addresses refused unless allowed). Not an image: `422`."""
    data = (await _upload(request, ctx))[0] if url is None else None

    def run() -> ContentInferences:
        return content.infer(ctx, collection, content.read(ctx, data, url), "file" if url is None else "url")

    return await run_in_threadpool(run)


@router.get("/{collection}/versions", response_model=VersionList)
def list_versions(collection: str, ctx: Ctx, _: ReadKey) -> VersionList:
    """Every producer of the collection with its `current` version (what records show and search uses),
    the `previous` one a rollback returns to, and its latest re-inference with progress."""
    return versions.list_versions(ctx, collection)


@router.post("/{collection}/versions", response_model=ReinferencePublic, status_code=status.HTTP_202_ACCEPTED)
def switch_version(collection: str, data: VersionSwitch, ctx: Ctx, _: WriteKey) -> ReinferencePublic:
    """Make a producer's version current: every record is re-inferred with it in the background (records
    whose content and model are unchanged come from the pipelines' cache), and search switches to it at
    once when the whole collection has it; until then search uses the current version. Answers the
    re-inference (poll `…/reinferences/{id}`). `404` for an unknown producer or model version, `409` when
    it is already current, a re-inference of it is running, or the bound stage runs another version."""
    return versions.switch(ctx, collection, data)


@router.get("/{collection}/reinferences/{reinference_id}", response_model=ReinferencePublic)
def get_reinference(collection: str, reinference_id: str, ctx: Ctx, _: ReadKey) -> ReinferencePublic:
    """A re-inference: state (running, succeeded, failed, cancelled) and progress."""
    return versions.get_reinference(ctx, collection, reinference_id)


@router.post("/{collection}/reinferences/{reinference_id}/cancel", response_model=ReinferencePublic)
def cancel_reinference(collection: str, reinference_id: str, ctx: Ctx, _: WriteKey) -> ReinferencePublic:
    """Cancel a running re-inference (its events not yet ended stop too); the current version stays.
    `409` when it has already finished."""
    return versions.cancel(ctx, collection, reinference_id)


@router.post("/{collection}/versions/{producer}/rollback", response_model=ProducerVersionPublic)
def rollback_version(collection: str, producer: str, ctx: Ctx, _: WriteKey) -> ProducerVersionPublic:
    """Make the producer's previous version current again, at once (its values were kept). `409` when
    there is none or a re-inference of the producer is running."""
    return versions.rollback(ctx, collection, producer)


ExportFormat = Annotated[str, Query(description="jsonl (default) or parquet")]


def _export_response(collection: str, fmt: str, chunks: Iterator[bytes]) -> StreamingResponse:
    disposition = f'attachment; filename="{collection}.{fmt}"'
    return StreamingResponse(
        chunks, media_type=export.MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition}
    )


@router.get("/{collection}/export", response_class=StreamingResponse)
def export_collection(
    collection: str, ctx: Ctx, _: ReadKey, format: ExportFormat = "jsonl"
) -> StreamingResponse:
    """Every record of the collection with its current inferences, streamed as JSONL (one record a line,
    as `GET …/records/{id}` shows it) or Parquet (`attributes` and `inferred` as JSON text columns).
    `400` for another format."""
    return _export_response(collection, format, export.export(ctx, collection, export.check_format(format)))


@router.post("/{collection}/export", response_class=StreamingResponse)
def export_search(
    collection: str, query: SearchQuery, ctx: Ctx, _: ReadKey, format: ExportFormat = "jsonl"
) -> StreamingResponse:
    """Every hit of a search (all pages; the body is a search, as `POST …/search` takes), streamed as JSONL
    or Parquet like the collection export. A bad query is the search's own `400`, before anything is
    sent."""
    chunks = export.export(ctx, collection, export.check_format(format), query)
    return _export_response(collection, format, chunks)
