"""Raw data read as what an inferrer accepts: an ``image`` decoded (bounded, upright, RGB), an ``array``
loaded from ``.npy`` bytes, a ``table`` (a pyarrow ``Table``) read from Parquet, Arrow IPC or CSV bytes,
``json`` parsed; values already of that type pass through. A value that cannot be read so is an
``UndecodableInput``."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as paipc
import pyarrow.parquet as pq
from PIL import Image

from modelyard.errors import UndecodableInput
from modelyard.inferrers.images import DEFAULT_LIMITS, ImageLimits, decode_image, decoding_bytes

ACCEPTS = ("image", "array", "table", "json", "bytes")
NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
ARROW_MAGIC = b"ARROW1"


def _array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list | int | float):
        return np.asarray(value)
    data = bytes(value)
    if not data.startswith(NPY_MAGIC):
        raise UndecodableInput("cannot read the input as an array: it is not a .npy file")
    try:
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise UndecodableInput(f"cannot read the input as an array (.npy): {exc}") from None


def _table(value: Any) -> pa.Table:
    if isinstance(value, pa.Table):
        return value
    data = bytes(value)
    try:
        if data.startswith(PARQUET_MAGIC):
            return pq.read_table(pa.BufferReader(data))
        if data.startswith(ARROW_MAGIC):
            return paipc.open_file(pa.BufferReader(data)).read_all()
        if not data.strip():
            raise UndecodableInput("cannot read the input as a table: it is empty")
        return pacsv.read_csv(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        detail = f"cannot read the input as a table (Parquet, Arrow IPC or CSV): {exc}"
        raise UndecodableInput(detail) from None


def _json(value: Any) -> Any:
    if not isinstance(value, bytes | bytearray | memoryview):
        return value
    try:
        return orjson.loads(bytes(value))
    except orjson.JSONDecodeError as exc:
        raise UndecodableInput(f"cannot read the input as JSON: {exc}") from None


def read_input(
    accepts: str, value: Any, *, limits: ImageLimits = DEFAULT_LIMITS, draft_side: int | None = None
) -> Any:
    """``value`` (raw bytes, or an upstream output) as data of type ``accepts``; an image is decoded within
    ``limits``, and may decode at a reduced scale down to ``draft_side`` (for inferrers that shrink it
    anyway)."""
    if accepts == "image":
        if isinstance(value, Image.Image):
            return value
        return decode_image(bytes(value), limits=limits, draft_side=draft_side)
    if accepts == "array":
        return _array(value)
    if accepts == "table":
        return _table(value)
    if accepts == "json":
        return _json(value)
    if accepts == "bytes" and isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def reading_bytes(
    accepts: str, value: Any, *, limits: ImageLimits = DEFAULT_LIMITS, draft_side: int | None = None
) -> int:
    """The memory ``read_input`` takes to read ``value`` as ``accepts`` that a caller bounds: an image's
    decoding (read from its header; raises as decoding would), 0 for anything else."""
    if accepts != "image" or isinstance(value, Image.Image):
        return 0
    return decoding_bytes(bytes(value), limits=limits, draft_side=draft_side)
