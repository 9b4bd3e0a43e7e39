"""Job outputs: one Parquet file per chunk, and the job's results streamed as Parquet, CSV or JSONL.

A chunk's file has an ``row`` column (the input row number) and one column per model output: a
scalar column for a 1-D output, a fixed-size list for a 2-D one (``[n, k]``; wider ones flattened
per row). CSV spreads a list column over ``name_0 .. name_{k-1}``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

OUTPUT_FORMATS = ("parquet", "csv", "jsonl")
MEDIA_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}


def chunk_table(rows: np.ndarray, outputs: dict[str, np.ndarray]) -> pa.Table:
    """The table of one chunk: the input row numbers, then each output."""
    columns: dict[str, pa.Array] = {"row": pa.array(rows, type=pa.int64())}
    for name, arr in outputs.items():
        if arr.ndim <= 1:
            columns[name] = pa.array(arr.tolist() if arr.dtype == np.object_ else arr)
        else:
            flat = np.ascontiguousarray(arr).reshape(arr.shape[0], -1)
            values = pa.array(flat.ravel().tolist() if flat.dtype == np.object_ else flat.ravel())
            columns[name] = pa.FixedSizeListArray.from_arrays(values, flat.shape[1])
    return pa.table(columns)


# Model outputs (floats, row numbers) gain nothing from dictionary encoding, which costs 3x the write time.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "snappy", "use_dictionary": False}


def table_bytes(table: pa.Table) -> bytes:
    """A table as a Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    return bytes(sink.getvalue())


def write_table(table: pa.Table, path: Path) -> None:
    """A table as a Parquet file at ``path``, encoded straight to disk (no copy of it in memory)."""
    with pa.OSFile(str(path), "wb") as sink:
        pq.write_table(table, sink, **PARQUET_OPTIONS)


class _Drain:
    """A write-only file that hands out what was written since the last ``take`` (for streaming)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def flatten_lists(table: pa.Table) -> pa.Table:
    """List columns spread over one column per position (``name_0``, ``name_1``...), for CSV."""
    names: list[str] = []
    arrays: list[Any] = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            flat = col.combine_chunks().flatten()
            for i in range(width):
                names.append(f"{name}_{i}")
                arrays.append(flat.take(pa.array(np.arange(i, len(flat), width))))
        else:
            names.append(name)
            arrays.append(col)
    return pa.table(arrays, names=names)


def stream(tables: Iterable[pa.Table], fmt: str) -> Iterator[bytes]:
    """The chunk tables, in order, as one file of ``fmt`` produced piece by piece."""
    writers: dict[str, Callable[[Iterable[pa.Table]], Iterator[bytes]]] = {
        "parquet": _parquet,
        "csv": _csv,
        "jsonl": _jsonl,
    }
    return writers[fmt](tables)


def _parquet(tables: Iterable[pa.Table]) -> Iterator[bytes]:
    drain = _Drain()
    writer: pq.ParquetWriter | None = None
    for table in tables:
        if writer is None:
            writer = pq.ParquetWriter(drain, table.schema, **PARQUET_OPTIONS)
        writer.write_table(table)
        yield drain.take()
    if writer is not None:
        writer.close()
        yield drain.take()


def _csv(tables: Iterable[pa.Table]) -> Iterator[bytes]:
    drain = _Drain()
    writer: pacsv.CSVWriter | None = None
    for table in tables:
        flat = flatten_lists(table)
        if writer is None:
            writer = pacsv.CSVWriter(drain, flat.schema)
        writer.write_table(flat)
        yield drain.take()
    if writer is not None:
        writer.close()
        yield drain.take()


def _jsonl(tables: Iterable[pa.Table]) -> Iterator[bytes]:
    for table in tables:
        buf = io.BytesIO()
        for batch in table.to_batches(max_chunksize=10_000):
            for row in batch.to_pylist():
                buf.write(orjson.dumps(row))
                buf.write(b"\n")
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
