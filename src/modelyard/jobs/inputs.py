"""Batch input files: detect the format, check it against the model, plan row ranges (``readers.py``
reads one range).

Formats: CSV (header row optional), JSONL (per line a JSON array, or an object keyed by the model's
``metadata.columns``), Parquet and ``.npy`` (a 2-D numeric array). Nothing here loads a whole file:
planning streams it once, and a chunk reads only its own rows (CSV and JSONL through the byte offsets
the plan recorded, Parquet through its row groups, ``.npy`` through a memory map).

Rows are numbered from 0 in file order, header excluded; the same number is the ``row`` column of the
output, and the one malformed rows are reported with.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from modelyard.dtypes import numpy_of
from modelyard.errors import BadRequest, InvalidInput, ValidationFailed
from modelyard.jobs.schemas import JobCreate, first_bad_row
from modelyard.serving.rest import rows_to_array

FORMATS = ("csv", "jsonl", "parquet", "npy")
SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
}
BLOCK = 8 * 1024 * 1024
SNIFF_BYTES = 256 * 1024
NUMERIC_KINDS = "biuf"
NEWLINE, QUOTE, CR = 10, 34, 13
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Features:
    """What the model takes as one row: its single 2-D input's name, width (None if dynamic) and dtype,
    and the column names its metadata orders rows by (``metadata.columns``), if any."""

    input_name: str
    width: int | None
    dtype: np.dtype[Any]
    columns: list[str] | None = None

    @classmethod
    def from_signature(cls, signature: dict[str, Any], metadata: dict[str, Any]) -> Features:
        """The row shape of a model version; ``InvalidInput`` unless it has exactly one 2-D input."""
        inputs = signature.get("inputs", [])
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 2:
            raise InvalidInput(
                "batch jobs need a model with exactly one 2-D input (rows x features)", field="model"
            )
        spec = inputs[0]
        dtype = numpy_of(spec["datatype"])
        if dtype.kind not in NUMERIC_KINDS:
            raise InvalidInput(
                f"batch jobs need a numeric model input, not {spec['datatype']}", field="model"
            )
        width = spec["shape"][1] if isinstance(spec["shape"][1], int) and spec["shape"][1] > 0 else None
        raw = metadata.get("columns")
        columns = [str(c) for c in raw] if isinstance(raw, list) else []
        # columns that do not match the input's width are stale metadata: ignore them
        if columns and (width is None or len(columns) == width):
            return cls(spec["name"], len(columns), dtype, columns)
        return cls(spec["name"], width, dtype, None)


@dataclass(frozen=True, slots=True)
class Span:
    """The rows ``[row_start, row_end)`` of a chunk, and (CSV, JSONL) the bytes holding them."""

    row_start: int
    row_end: int
    byte_start: int | None = None
    byte_end: int | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """How to read a CSV file's rows: its header's column names (None without one) and field count."""

    header: list[str] | None = None
    fields: int = 0


@dataclass(slots=True)
class Rows:
    """Rows read from a span: the good ones (``values``, numbered by ``rows``), and every malformed one."""

    values: np.ndarray
    rows: np.ndarray
    errors: list[tuple[int, str]] = field(default_factory=list)


def detect_format(filename: str | None, declared: str | None = None) -> str:
    """The input format: the one declared, else the one the file's suffix names."""
    if declared:
        fmt = declared.lower().lstrip(".")
        if fmt not in FORMATS:
            raise BadRequest(f"unknown input format {declared!r}; use one of {list(FORMATS)}", field="format")
        return fmt
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise BadRequest(
            f"cannot tell the format of {filename!r}: name it .csv, .jsonl, .parquet or .npy, or send "
            "the format field",
            field="format",
        )
    return SUFFIXES[suffix]


def _dtype_ok(got: np.dtype[Any], want: np.dtype[Any]) -> bool:
    """The casts the model runtime accepts: same kind, or integers/booleans into any number."""
    return got.kind in NUMERIC_KINDS and (
        np.can_cast(got, want, casting="same_kind") or (got.kind in "iub" and want.kind in "iuf")
    )


def _wrong_dtype(what: str, got: object, want: np.dtype[Any]) -> InvalidInput:
    return InvalidInput(f"{what} has dtype {got}, the model expects {want}", field="file")


def _check_width(found: int, features: Features, what: str) -> None:
    if features.width is not None and found != features.width:
        raise InvalidInput(f"{what} has {found} columns, the model expects {features.width}", field="file")


# ---------------------------------------------------------------- inspection (at submission)


Source = Path | bytes  # a file, or the .npy bytes of small inline rows kept in the job's row


def load_npy(source: Source) -> np.ndarray:
    """A .npy array: memory-mapped from a file, or read from bytes."""
    if isinstance(source, bytes):
        found = np.load(io.BytesIO(source), allow_pickle=False)
    else:
        found = np.load(source, mmap_mode="r", allow_pickle=False)
    return cast(np.ndarray, found)


def inspect(source: Source, fmt: str, features: Features) -> Layout:
    """Check a file's structure against the model quickly (header, columns, dtypes; not every row).

    Raises ``BadRequest`` for an unreadable or empty file and ``InvalidInput`` for wrong columns or
    dtypes. Row-level problems are found while the job runs and handled per its ``on_error``.
    """
    if (len(source) if isinstance(source, bytes) else source.stat().st_size) == 0:
        raise BadRequest("the input file is empty", field="file")
    if fmt == "npy":
        _inspect_npy(source, features)
        return Layout()
    path = file_of(source)
    if fmt == "parquet":
        parquet_columns(path, features)
        return Layout()
    if fmt == "jsonl":
        _inspect_jsonl(path, features)
        return Layout()
    return _inspect_csv(path, features)


def file_of(source: Source) -> Path:
    """Only .npy input is ever kept as bytes; every other format is a file."""
    assert isinstance(source, Path), "only .npy input is kept as bytes"
    return source


def _inspect_npy(source: Source, features: Features) -> None:
    head = source[:8] if isinstance(source, bytes) else _head(source)
    if not head.startswith(b"\x93NUMPY"):
        raise BadRequest("the file is not a readable .npy array (no NumPy header)", field="file")
    try:
        arr = load_npy(source)
    except ValueError as exc:
        raise InvalidInput(f"the .npy file cannot be read as a numeric array: {exc}", field="file") from exc
    except Exception as exc:
        raise BadRequest(f"the file is not a readable .npy array: {exc}", field="file") from exc
    if arr.ndim != 2:
        raise InvalidInput(f"the .npy array has {arr.ndim} dimension(s); send rows x features", field="file")
    if not _dtype_ok(arr.dtype, features.dtype):
        raise _wrong_dtype("the .npy array", arr.dtype, features.dtype)
    _check_width(arr.shape[1], features, "the .npy array")
    if arr.shape[0] == 0:
        raise BadRequest("the input file has no rows", field="file")


def parquet_columns(path: Path, features: Features) -> list[str]:
    """The columns to read from a Parquet file, in model order; checks names and types."""
    try:
        schema = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:
        raise BadRequest(f"the file is not readable Parquet: {exc}", field="file") from exc
    if rows == 0:
        raise BadRequest("the input file has no rows", field="file")
    names = list(schema.names)
    if features.columns is not None and all(c in names for c in features.columns):
        chosen = list(features.columns)
    elif len(names) == 1 and is_list_type(schema.field(0).type):
        chosen = names
    elif features.columns is not None and len(names) != len(features.columns):
        missing = [c for c in features.columns if c not in names]
        raise InvalidInput(f"the Parquet file lacks column(s) {missing}", field="file")
    else:
        chosen = names
    for name in chosen:
        typ = schema.field(name).type
        if is_list_type(typ):
            typ = typ.value_type
        elif len(chosen) == 1 and features.width not in (None, 1):
            raise InvalidInput(
                f"the Parquet file has 1 column, the model expects {features.width}", field="file"
            )
        try:
            got = np.dtype(typ.to_pandas_dtype())
        except (NotImplementedError, TypeError):
            got = np.dtype(object)
        if not _dtype_ok(got, features.dtype):
            raise _wrong_dtype(f"column {name!r}", typ, features.dtype)
    if len(chosen) > 1:
        _check_width(len(chosen), features, "the Parquet file")
    return chosen


def is_list_type(typ: pa.DataType) -> bool:
    """Whether a Parquet column holds a list per row (the feature vector in one column)."""
    return bool(pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ))


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_BYTES)


def _inspect_jsonl(path: Path, features: Features) -> None:
    for line in _head(path).splitlines():
        if line.strip():
            try:
                first = orjson.loads(line)
            except orjson.JSONDecodeError:
                # the first record may be cut at SNIFF_BYTES, or be one malformed row: leave it to the rows
                return
            if isinstance(first, dict) and features.columns is None:
                raise InvalidInput(
                    "JSONL rows given as objects need the model's metadata.columns to order them",
                    field="file",
                )
            return
    raise BadRequest("the input file has no rows", field="file")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _inspect_csv(path: Path, features: Features) -> Layout:
    head = _head(path).decode("utf-8-sig", errors="replace")
    records = [r for r in csv.reader(io.StringIO(head)) if r]
    if not records:
        raise BadRequest("the input file has no rows", field="file")
    first = [c.strip() for c in records[0]]
    header = first if any(c and not _is_number(c) for c in first) else None
    if header is not None and len(records) < 2 and len(head) < SNIFF_BYTES:
        raise BadRequest("the input file has a header but no rows", field="file")
    if header is not None and features.columns is not None:
        missing = [c for c in features.columns if c not in header]
        if missing and len(header) != len(features.columns):
            raise InvalidInput(f"the CSV header lacks column(s) {missing}", field="file")
    if header is None or features.columns is None or any(c not in header for c in features.columns):
        _check_width(len(first), features, "the CSV file")
    return Layout(header=header, fields=len(first))


# ---------------------------------------------------------------- planning (one streaming pass)


def plan(source: Source, fmt: str, chunk_rows: int, layout: Layout) -> list[Span]:
    """Split the file into spans of ``chunk_rows`` rows, streaming it once; an empty list if no rows."""
    if fmt == "npy":
        return _row_spans(int(load_npy(source).shape[0]), chunk_rows)
    path = file_of(source)
    if fmt == "parquet":
        return _row_spans(pq.ParquetFile(path).metadata.num_rows, chunk_rows)
    skip = 1 if layout.header is not None else 0
    starts, total, size = _record_starts(path, chunk_rows, quoted=fmt == "csv", skip=skip)
    ends = [*starts[1:], size]
    return [
        Span(i * chunk_rows, min((i + 1) * chunk_rows, total), start, end)
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def _row_spans(total: int, chunk_rows: int) -> list[Span]:
    return [Span(s, min(s + chunk_rows, total)) for s in range(0, total, chunk_rows)]


def _record_starts(path: Path, every: int, *, quoted: bool, skip: int) -> tuple[list[int], int, int]:
    """Byte offsets where records ``skip``, ``skip+every``... start; the record count after ``skip``; size.

    A record ends at a newline outside double quotes (CSV) or at any newline (JSONL); empty lines are
    not records. Vectorised per block with numpy, so planning runs at disk speed.
    """
    starts: list[int] = []
    count = 0  # records seen, header included
    line_start = 0  # global offset where the current line began
    in_quote = 0
    last_byte = -1  # last byte of the previous block
    pos = 0
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            arr = np.frombuffer(block, dtype=np.uint8)
            nl = np.flatnonzero(arr == NEWLINE)
            if quoted:
                quotes = np.cumsum(arr == QUOTE, dtype=np.int64)
                if nl.size:
                    nl = nl[((in_quote + quotes[nl]) & 1) == 0]
                in_quote = int((in_quote + int(quotes[-1])) & 1)
            if nl.size:
                line_starts = np.concatenate(([line_start - pos], nl[:-1] + 1))
                lengths = nl - line_starts
                content = lengths > 1
                one = lengths == 1
                if one.any():
                    first = line_starts[one]
                    firsts = np.where(first >= 0, arr[np.maximum(first, 0)], last_byte)
                    content[one] = firsts != CR
                rec = line_starts[content] + pos
                idx = np.arange(count, count + rec.size)
                keep = (idx >= skip) & ((idx - skip) % every == 0)
                starts.extend(int(x) for x in rec[keep])
                count += int(rec.size)
                line_start = pos + int(nl[-1]) + 1
            last_byte = int(arr[-1])
            pos += len(block)
    tail = pos - line_start
    if tail > 1 or (tail == 1 and last_byte != CR):
        if count >= skip and (count - skip) % every == 0:
            starts.append(line_start)
        count += 1
    if starts and starts[0] == 0 and _head(path)[:3] == BOM:
        starts[0] = len(BOM)  # the first record starts after the byte-order mark
    return starts, max(count - skip, 0), pos


def _refuse_first_bad_row(rows: Any) -> None:
    """The one rule of every JSON route for inline rows (``schemas.first_bad_row``): a 422 naming the first
    value that is not a finite number. Run only once the fast conversion has failed."""
    try:
        first_bad_row(rows)
    except ValueError as exc:
        problem = {"field": "body.rows", "detail": str(exc)}
        raise ValidationFailed(f"body.rows: {exc}", errors=[problem], field="body.rows") from None


def table_of(rows: Any, columns: list[str] | None) -> np.ndarray:
    """Inline rows (lists, or objects keyed by ``columns``) as one float64 table; a value that is not a
    finite number (a numeric string such as "nan" included) is refused, naming the first such row."""
    try:
        arr = rows_to_array(rows, {"inputs": [{"datatype": "FP64"}]}, {"columns": columns})
    except InvalidInput:
        _refuse_first_bad_row(rows)
        raise
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        _refuse_first_bad_row(rows)
    return arr


def inline_array(rows: Any, features: Features) -> np.ndarray:
    """Inline rows as one array in the model's dtype and width (``table_of``); rows already made a table
    (in a worker process: ``serving.offload``) are only checked and cast."""
    arr = rows if isinstance(rows, np.ndarray) else table_of(rows, features.columns)
    check_row_width(arr.shape[1], features)
    return arr.astype(features.dtype, copy=False)


def check_row_width(width: int, features: Features) -> None:
    """``InvalidInput`` unless inline rows of ``width`` values fit the model."""
    if features.width is not None and width != features.width:
        raise InvalidInput(f"rows have {width} values, the model expects {features.width}", field="rows")


def read_request(raw: bytes) -> tuple[JobCreate, Any]:
    """A JSON job request, parsed (off the event loop: a million inline rows take seconds) into the request
    without its rows, validated, and the rows as parsed, for ``submit`` to turn into one array: no model
    object per row or per value is built."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object: model, and rows or uri")
    rows = data.pop("rows", None)
    try:
        request = JobCreate.model_validate({**data, "rows": None if rows is None else []})
    except ValidationError as exc:
        raise ValidationFailed.of_validation(exc.errors(), under="body") from exc
    return request, rows
