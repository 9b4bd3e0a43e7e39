"""Stage outputs as stored: a value (JSON-able, array, table, image, bytes) encoded by kind, keyed by
pipeline/stage/event in the artifact store, small JSON also kept inline in the stage run row. A stage may
also hand back a ``LocalFile`` it wrote (a large image): stored as it is, hashed by chunks. An array may be
stored as ``.npy`` or as a TIFF (a large label mask, written by tiles)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from modelyard.inferrers.images import encode_png
from modelyard.pipelines.stages import LocalFile
from modelyard.storage import sha256_file

MEDIA = {
    "json": "application/json",
    "npy": "application/x-npy",
    "parquet": "application/vnd.apache.parquet",
    "png": "image/png",
    "tif": "image/tiff",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bin": "application/octet-stream",
    "log": "text/plain; charset=utf-8",
}
JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class Encoded:
    """An output ready to store: its kind, bytes (or the local file holding them), file suffix, sha256,
    and the value if it fits inline."""

    kind: str
    data: bytes
    ext: str
    sha256: str
    inline: Any = None
    file: Path | None = None

    @property
    def size(self) -> int:
        """Bytes stored."""
        return self.file.stat().st_size if self.file is not None else len(self.data)


def _image_ext(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data.startswith(b"GIF8"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _kind_of(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, pa.Table):
        return "table"
    if isinstance(value, Image.Image):
        return "image"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    return "json"


def encode(value: Any, declared: str = "any", *, inline_bytes: int = 4096) -> Encoded:
    """Encode a stage's return value as its declared type (``any``: by what it is)."""
    if isinstance(value, LocalFile):
        kind = "bytes" if declared in ("any", "json", "table") else declared
        return Encoded(kind, b"", value.ext, sha256_file(value.path), file=value.path)
    kind = _kind_of(value) if declared == "any" else declared
    if kind == "json":
        data = orjson.dumps(value.tolist() if isinstance(value, np.ndarray) else value, option=JSON_OPTS)
        inline = orjson.loads(data) if len(data) <= inline_bytes else None
        return Encoded("json", data, "json", hashlib.sha256(data).hexdigest(), inline)
    if kind == "array":
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError("an array output must have a numeric or string dtype, not object")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        return Encoded("array", data, "npy", hashlib.sha256(data).hexdigest())
    if kind == "table":
        if not isinstance(value, pa.Table):
            raise TypeError(f"a table output must be a pyarrow Table, not {type(value).__name__}")
        sink = pa.BufferOutputStream()
        pq.write_table(value, sink)
        data = bytes(sink.getvalue())
        return Encoded("table", data, "parquet", hashlib.sha256(data).hexdigest())
    if kind == "image":
        data = encode_png(value) if isinstance(value, Image.Image) else bytes(value)
        return Encoded("image", data, _image_ext(data), hashlib.sha256(data).hexdigest())
    if kind == "bytes":
        data = value.encode() if isinstance(value, str) else bytes(value)
        return Encoded("bytes", data, "bin", hashlib.sha256(data).hexdigest())
    raise TypeError(f"cannot store a {type(value).__name__} as {kind}")


def decode(kind: str, data: bytes) -> Any:
    """The value of a stored output: JSON value, ndarray, pyarrow Table, or bytes (images stay encoded)."""
    if kind == "json":
        return orjson.loads(data)
    if kind == "array":
        if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
            from modelyard.analysis.images import tiff_array  # only tissue stages store TIFF arrays

            return tiff_array(data)
        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind == "table":
        return pq.read_table(pa.BufferReader(data))
    return data


def stage_prefix(pipeline: str, stage: str) -> str:
    """Where a stage's outputs and logs for every event live."""
    return f"pipelines/{pipeline}/{stage}"


def output_key(pipeline: str, stage: str, event_id: str, ext: str) -> str:
    """Where a stage's output for an event lives."""
    return f"{stage_prefix(pipeline, stage)}/{event_id}.{ext}"


def logs_key(pipeline: str, stage: str, event_id: str) -> str:
    """Where a stage run's captured logs live."""
    return f"{stage_prefix(pipeline, stage)}/{event_id}.log"


def raw_key(event_id: str) -> str:
    """Where fetched raw data lives (URLs only; files and artifacts are read where they are)."""
    return f"pipelines/raw/{event_id}"


def archive_key(key: str) -> str:
    """The archive location of a stored key."""
    return f"archive/{key}"


def media_type(key: str) -> str:
    """The media type of a stored output, from its suffix."""
    return MEDIA.get(key.rsplit(".", 1)[-1], "application/octet-stream")
