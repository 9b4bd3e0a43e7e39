"""Bulk ingest of records from JSONL, CSV or Parquet, streamed: the body arrives as chunks and is parsed a
line (or a Parquet row batch) at a time, never held whole in memory; Parquet, whose footer comes last, is
spooled to a temporary file first, up to a size cap.

Each line is checked whole (fields, the raw data location exactly as pipeline events check it, an id not
already seen in this file) before anything of it is written; good lines are upserted in batches, each in
one transaction, and every bad line is reported with its line number, field and reason. Nothing is dropped
silently: every line is counted as created, updated, unchanged or rejected.
"""

from __future__ import annotations

import codecs
import csv
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from modelyard.catalog import binding, service
from modelyard.catalog.schemas import IngestReport, LineError, RecordCreate
from modelyard.context import AppContext
from modelyard.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, validation_problems

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: dict[str, Format] = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "csv": "csv",
    "parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/x-jsonlines": "jsonl",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
BATCH = 500  # records per transaction
MAX_LINE_BYTES = 1024 * 1024
MAX_ERRORS = 1000  # errors listed in a report (all are counted)
RECORD_FIELDS = ("id", "title", "description", "source", "content_hash")
Row = tuple[int, dict[str, Any] | LineError]


def pick_format(requested: str | None, content_type: str | None) -> Format:
    """The format named by ``?format=`` or else by the Content-Type; 415 naming both otherwise."""
    if requested:
        found = FORMATS.get(requested.lower())
        if found is None:
            raise UnsupportedMediaType(
                f"unknown ingest format {requested!r}: use jsonl, csv or parquet", field="format"
            )
        return found
    media = (content_type or "").split(";")[0].strip().lower()
    found = FORMATS.get(media)
    if found is None:
        raise UnsupportedMediaType(
            f"cannot tell the ingest format from Content-Type {media or '(none)'!r}: send "
            "application/x-ndjson, text/csv or application/vnd.apache.parquet, or pass ?format=",
            field="format",
        )
    return found


def _lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str | None]]:
    """Text lines (None for one over ``MAX_LINE_BYTES``), numbered from 1, as the chunks arrive."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf, number, skipping = "", 0, False
    for chunk in chunks:
        buf += decoder.decode(chunk)
        while (cut := buf.find("\n")) >= 0:
            line, buf = buf[:cut], buf[cut + 1 :]
            number += 1
            yield number, None if skipping else line.rstrip("\r")
            skipping = False
        if len(buf) > MAX_LINE_BYTES:
            buf, skipping = "", True
    buf += decoder.decode(b"", final=True)
    if buf or skipping:
        yield number + 1, None if skipping else buf


def _too_long(number: int) -> LineError:
    return LineError(line=number, field=None, detail=f"line is over {MAX_LINE_BYTES} bytes")


def jsonl_rows(chunks: Iterable[bytes]) -> Iterator[Row]:
    """Rows of a JSONL body (blank lines skipped)."""
    for number, line in _lines(chunks):
        if line is None:
            yield number, _too_long(number)
            continue
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, LineError(line=number, field=None, detail=f"not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield number, LineError(line=number, field=None, detail="a line must be a JSON object")
            continue
        yield number, value


def _cell(text: str) -> Any:
    """A CSV cell as an attribute value: a number when it reads as one, else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


class ColumnError(ValueError):
    """A row's columns cannot be made into a record (``field`` names the column)."""

    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


def _from_columns(row: dict[str, Any], typed: bool) -> dict[str, Any]:
    """Record fields from named columns: the record's own, ``attributes`` (an object) and any other column
    as one attribute (``a.b`` nests)."""
    out: dict[str, Any] = {k: row[k] for k in RECORD_FIELDS if row.get(k) not in (None, "")}
    attributes: dict[str, Any] = {}
    if row.get("attributes") not in (None, ""):
        given = row["attributes"]
        try:
            attributes = orjson.loads(given) if isinstance(given, str) else given
        except orjson.JSONDecodeError as exc:
            raise ColumnError("attributes", f"not a JSON object: {exc}") from None
        if not isinstance(attributes, dict):
            raise ColumnError("attributes", "must be a JSON object")
    for key, value in row.items():
        if key in RECORD_FIELDS or key == "attributes" or value in (None, ""):
            continue
        target = attributes
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ColumnError(key, f"{part!r} is already a value, so {key!r} cannot nest in it")
        target[leaf] = value if typed else _cell(value)
    out["attributes"] = attributes
    return out


def csv_rows(chunks: Iterable[bytes]) -> Iterator[Row]:
    """Rows of a CSV body with a header line (a quoted cell may span lines: a row is numbered by the line
    it ends on)."""
    lines = _lines(chunks)
    current = [0]

    def text() -> Iterator[str]:
        for number, line in lines:
            current[0] = number
            yield ("" if line is None else line) + "\n"

    reader = csv.DictReader(text(), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield current[0], LineError(line=current[0], field=None, detail=f"not valid CSV: {exc}")
            continue
        number = current[0]
        if None in row:
            yield number, LineError(line=number, field=None, detail="more cells than header columns")
            continue
        try:
            yield number, _from_columns(row, typed=False)
        except ColumnError as exc:
            yield number, LineError(line=number, field=exc.field, detail=exc.detail)


def parquet_rows(chunks: Iterable[bytes], max_bytes: int) -> Iterator[Row]:
    """Rows of a Parquet body, spooled to a temporary file (at most ``max_bytes``); numbered from 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryFile() as spool:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the Parquet file is over the {max_bytes}-byte limit", field="body")
            spool.write(chunk)
        spool.seek(0)
        try:
            parquet = pq.ParquetFile(spool)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadRequest(f"not a Parquet file: {exc}", field="body") from None
        number = 0
        for batch in parquet.iter_batches(batch_size=BATCH):
            for row in batch.to_pylist():
                number += 1
                try:
                    yield number, _from_columns(row, typed=True)
                except ColumnError as exc:
                    yield number, LineError(line=number, field=exc.field, detail=exc.detail)


def _check(ctx: AppContext, number: int, row: dict[str, Any]) -> RecordCreate | LineError:
    if "attributes" in row:
        try:  # as stored: dates become ISO strings; what JSON cannot hold is refused here, not at write
            row = {**row, "attributes": orjson.loads(orjson.dumps(row["attributes"]))}
        except (orjson.JSONEncodeError, TypeError) as exc:
            return LineError(line=number, field="attributes", detail=f"not representable as JSON: {exc}")
    try:
        record = RecordCreate.model_validate(row)
    except ValidationError as exc:
        first = validation_problems(exc.errors()[:1])[0]
        return LineError(line=number, field=first["field"] or None, detail=first["detail"], id=_id_of(row))
    try:
        service.check_source(ctx, record.source)
    except BadRequest as exc:
        return LineError(line=number, field="source", detail=exc.detail, id=record.id)
    return record


def _id_of(row: dict[str, Any]) -> str | None:
    value = row.get("id")
    return value if isinstance(value, str) else None


def ingest(ctx: AppContext, collection: str, rows: Iterable[Row]) -> IngestReport:
    """Check every row and upsert the good ones in batches; the report counts and lists what happened."""
    with ctx.uow() as session:
        collection_id = service.get_collection(session, collection).id
    report = IngestReport(lines=0, created=0, updated=0, unchanged=0, rejected=0, errors=[])
    seen: dict[str, int] = {}
    batch: list[RecordCreate] = []

    def reject(error: LineError) -> None:
        report.rejected += 1
        if len(report.errors) < MAX_ERRORS:
            report.errors.append(error)

    for number, row in rows:
        report.lines += 1
        checked = row if isinstance(row, LineError) else _check(ctx, number, row)
        if isinstance(checked, LineError):
            reject(checked)
            continue
        if checked.id in seen:
            detail = f"record id {checked.id!r} is repeated in this file (first on line {seen[checked.id]})"
            reject(LineError(line=number, field="id", detail=detail, id=checked.id))
            continue
        seen[checked.id] = number
        batch.append(checked)
        if len(batch) >= BATCH:
            _write(ctx, collection_id, batch, report)
            batch = []
    if batch:
        _write(ctx, collection_id, batch, report)
    return report


def _write(ctx: AppContext, collection_id: str, batch: list[RecordCreate], report: IngestReport) -> None:
    with ctx.uow() as session:
        written = service.upsert(session, collection_id, batch)
    for w in written:
        setattr(report, w.outcome, getattr(report, w.outcome) + 1)
    report.events += binding.submit(ctx, collection_id, written)


def read_rows(fmt: Format, chunks: Iterable[bytes], *, max_parquet_bytes: int) -> Iterator[Row]:
    """Rows of a body in ``fmt``."""
    if fmt == "jsonl":
        return jsonl_rows(chunks)
    if fmt == "csv":
        return csv_rows(chunks)
    return parquet_rows(chunks, max_parquet_bytes)
