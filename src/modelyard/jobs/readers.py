"""Reading one span of a batch input file: the good rows cast to the model's dtype, every malformed row
listed with its number and what is wrong with it (never raised, so ``on_error`` decides).

Well-formed spans take a fast path (pyarrow's CSV reader, one numpy conversion for JSONL, Parquet
columns straight to numpy); a span with any problem is read again row by row to say which rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelyard.jobs.inputs import (
    Features,
    Layout,
    Rows,
    Source,
    Span,
    file_of,
    is_list_type,
    load_npy,
    parquet_columns,
)


def read_span(source: Source, fmt: str, span: Span, features: Features, layout: Layout) -> Rows:
    """The rows of one span, cast to the model's dtype, with every malformed row listed (not raised)."""
    if fmt == "npy":
        arr = load_npy(source)
        values = np.ascontiguousarray(arr[span.row_start : span.row_end], dtype=features.dtype)
        return Rows(values, np.arange(span.row_start, span.row_end, dtype=np.int64))
    path = file_of(source)
    if fmt == "parquet":
        return _read_parquet(path, span, features)
    assert span.byte_start is not None and span.byte_end is not None
    with path.open("rb") as f:
        f.seek(span.byte_start)
        data = f.read(span.byte_end - span.byte_start)
    if fmt == "jsonl":
        return _read_jsonl(data, span, features)
    return _read_csv(data, span, features, layout)


def _finish(rows: list[Any], numbers: list[int], errors: list[tuple[int, str]], features: Features) -> Rows:
    width = features.width or (len(rows[0]) if rows else 0)
    values = np.asarray(rows, dtype=features.dtype).reshape(len(rows), width)
    return Rows(values, np.asarray(numbers, dtype=np.int64), errors)


def _row_values(raw: list[Any], row: int, features: Features, *, text: bool = False) -> list[float] | str:
    """A row's values as numbers, or what is wrong with it (``text``: values are CSV fields to parse)."""
    if features.width is not None and len(raw) != features.width:
        return f"row {row}: expected {features.width} values, got {len(raw)}"
    out: list[float] = []
    for i, value in enumerate(raw):
        name = features.columns[i] if features.columns else str(i)
        if isinstance(value, str) and text:
            value = value.strip()
            if value == "":
                return f"row {row}: column {name!r} is empty"
            try:
                value = float(value)
            except ValueError:
                return f"row {row}: column {name!r} is not a number: {value[:40]!r}"
        elif value is None:
            return f"row {row}: column {name!r} is missing"
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return f"row {row}: column {name!r} is not a number: {str(value)[:40]!r}"
        out.append(value)
    return out


def _read_csv(data: bytes, span: Span, features: Features, layout: Layout) -> Rows:
    header = layout.header
    ncols = layout.fields
    if header is not None and features.columns is not None and all(c in header for c in features.columns):
        picks = [header.index(c) for c in features.columns]
    else:
        picks = list(range(ncols))
    expected = span.row_end - span.row_start
    fast = _csv_fast(data, ncols, picks, features) if ncols else None
    if fast is not None and len(fast) == expected:
        return Rows(fast, np.arange(span.row_start, span.row_end, dtype=np.int64))
    rows: list[Any] = []
    numbers: list[int] = []
    errors: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    row = span.row_start
    for record in reader:
        if not record:
            continue
        if ncols and len(record) != ncols:
            errors.append((row, f"row {row}: expected {ncols} fields, got {len(record)}"))
        else:
            got = _row_values([record[i] for i in picks], row, features, text=True)
            if isinstance(got, str):
                errors.append((row, got))
            else:
                rows.append(got)
                numbers.append(row)
        row += 1
    return _finish(rows, numbers, errors, features)


def _csv_fast(data: bytes, ncols: int, picks: list[int], features: Features) -> np.ndarray | None:
    """The whole span parsed by pyarrow when every row is well formed; None to take the careful path."""
    names = [f"c{i}" for i in range(ncols)]
    typ = pa.from_numpy_dtype(features.dtype)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            convert_options=pacsv.ConvertOptions(
                column_types={names[i]: typ for i in picks},
                include_columns=[names[i] for i in picks],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if any(col.null_count for col in table.columns):
        return None
    if table.num_rows == 0:
        return np.empty((0, len(picks)), dtype=features.dtype)
    return np.column_stack([col.to_numpy() for col in table.columns]).astype(features.dtype, copy=False)


def _json_row(line: bytes, row: int, features: Features) -> list[float] | str:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"row {row}: not valid JSON: {exc}"
    if isinstance(value, dict):
        if features.columns is None:
            return f"row {row}: an object row needs the model's metadata.columns"
        missing = [c for c in features.columns if c not in value]
        if missing:
            return f"row {row}: lacks column(s) {missing[:5]}"
        value = [value[c] for c in features.columns]
    if not isinstance(value, list):
        return f"row {row}: expected a JSON array or object, got {type(value).__name__}"
    return _row_values(value, row, features)


def _read_jsonl(data: bytes, span: Span, features: Features) -> Rows:
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        parsed = [orjson.loads(line) for line in lines]
        arr = np.asarray(parsed)
        if (
            arr.ndim == 2
            and arr.dtype.kind in "iuf"
            and (features.width is None or arr.shape[1] == features.width)
            and len(parsed) == span.row_end - span.row_start
        ):
            rows = np.arange(span.row_start, span.row_end, dtype=np.int64)
            return Rows(arr.astype(features.dtype, copy=False), rows)
    except (orjson.JSONDecodeError, ValueError):
        pass
    good: list[Any] = []
    numbers: list[int] = []
    errors: list[tuple[int, str]] = []
    for offset, line in enumerate(lines):
        row = span.row_start + offset
        got = _json_row(line, row, features)
        if isinstance(got, str):
            errors.append((row, got))
        else:
            good.append(got)
            numbers.append(row)
    return _finish(good, numbers, errors, features)


def _parquet_batches(path: Path, span: Span, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches covering the span, reading only the row groups it overlaps."""
    pf = pq.ParquetFile(path)
    offset = 0
    for group in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        lo, hi = max(span.row_start, offset), min(span.row_end, offset + n)
        if lo < hi:
            at = offset
            for batch in pf.iter_batches(batch_size=65_536, row_groups=[group], columns=columns):
                b_lo, b_hi = max(lo, at), min(hi, at + batch.num_rows)
                if b_lo < b_hi:
                    yield batch.slice(b_lo - at, b_hi - b_lo)
                at += batch.num_rows
        offset += n
        if offset >= span.row_end:
            break


def _read_parquet(path: Path, span: Span, features: Features) -> Rows:
    columns = parquet_columns(path, features)
    table = pa.Table.from_batches(list(_parquet_batches(path, span, columns)))
    numbers = np.arange(span.row_start, span.row_end, dtype=np.int64)
    if len(columns) == 1 and is_list_type(table.schema.field(0).type):
        lists = table.column(0).combine_chunks()
        lengths = lists.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False)
        width = features.width or (int(lengths[0]) if len(lengths) else 0)
        flat = lists.flatten()
        ok = lengths == width
        if ok.all() and flat.null_count == 0:
            values = flat.to_numpy(zero_copy_only=False).astype(features.dtype).reshape(-1, width)
            return Rows(values, numbers)
        return _parquet_rows_slow(lists.to_pylist(), numbers, features)
    if all(col.null_count == 0 for col in table.columns):
        values = np.column_stack([col.to_numpy() for col in table.columns]).astype(features.dtype, copy=False)
        return Rows(values.reshape(len(numbers), -1), numbers)
    rows = [list(r.values()) for r in table.to_pylist()]
    return _parquet_rows_slow(rows, numbers, features)


def _parquet_rows_slow(rows: list[Any], numbers: np.ndarray, features: Features) -> Rows:
    good: list[Any] = []
    kept: list[int] = []
    errors: list[tuple[int, str]] = []
    for row, raw in zip(numbers.tolist(), rows, strict=True):
        got = _row_values(raw, row, features) if raw is not None else f"row {row}: the value is missing"
        if isinstance(got, str):
            errors.append((row, got))
        else:
            good.append(got)
            kept.append(row)
    return _finish(good, kept, errors, features)
