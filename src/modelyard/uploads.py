"""Streaming receipt of uploaded files: multipart/form-data or a raw body, size-capped, hashed.

The file part goes straight to a temporary file while its sha256 is computed; the whole body is
never held in memory, and a body over the cap is refused as soon as the cap is crossed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelyard.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

FIELD_LIMIT = 1024 * 1024


@dataclass
class ReceivedUpload:
    """A received file on local disk plus the form's text fields. Call ``discard`` when done."""

    path: Path
    size: int
    sha256: str
    filename: str | None
    fields: dict[str, list[str]] = field(default_factory=dict)

    def discard(self) -> None:
        """Remove the temporary file."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def field(self, name: str) -> str | None:
        """The last value of a text field, if sent."""
        values = self.fields.get(name)
        return values[-1] if values else None


class _Receiver:
    def __init__(self, out: IO[bytes], file_field: str, max_bytes: int):
        self.out, self.file_field, self.max_bytes = out, file_field, max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.saw_file = False
        self.fields: dict[str, list[str]] = {}
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._name: str | None = None
        self._is_file = False
        self._buf = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._buf = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def _headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        try:
            self._name = opts.get(b"name", b"").decode()
        except UnicodeDecodeError:
            raise BadRequest("a multipart field name is not UTF-8") from None
        self._is_file = self._name == self.file_field
        if self._is_file:
            if self.saw_file:
                raise BadRequest(f"more than one {self.file_field!r} part", field=self.file_field)
            self.saw_file = True
            raw = opts.get(b"filename")
            self.filename = raw.decode(errors="replace") if raw else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.feed(chunk)
        else:
            self._buf += chunk
            if len(self._buf) > FIELD_LIMIT:
                raise PayloadTooLarge(
                    f"form field {self._name!r} is over {FIELD_LIMIT} bytes", field=self._name
                )

    def _part_end(self) -> None:
        if not self._is_file and self._name:
            if 0 in self._buf:
                raise BadRequest(f"form field {self._name!r} holds a NUL character", field=self._name)
            self.fields.setdefault(self._name, []).append(self._buf.decode(errors="replace"))

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(
                f"file is over the {self.max_bytes}-byte upload limit", field=self.file_field
            )
        self.hasher.update(chunk)
        self.out.write(chunk)


async def receive_upload(
    stream: AsyncIterator[bytes],
    content_type: str,
    *,
    file_field: str = "file",
    max_bytes: int,
    tmp_dir: Path,
    content_length: int | None = None,
) -> ReceivedUpload:
    """Write the uploaded file to a temporary file under ``tmp_dir``.

    Accepts ``multipart/form-data`` (the file in part ``file_field``, other parts as text fields)
    or a raw body (``application/octet-stream`` and the like). Raises ``PayloadTooLarge`` past
    ``max_bytes`` and ``BadRequest`` when the file part is missing; nothing is left on disk then.
    """
    if content_length is not None and content_length > max_bytes + FIELD_LIMIT:
        raise PayloadTooLarge(f"body of {content_length} bytes is over the {max_bytes}-byte upload limit")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-", suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            rec = _Receiver(out, file_field, max_bytes)
            ctype, opts = parse_options_header(content_type)
            if ctype == b"multipart/form-data":
                boundary = opts.get(b"boundary")
                if not boundary:
                    raise BadRequest("multipart body without a boundary")
                parser = MultipartParser(boundary, rec.callbacks())  # type: ignore[arg-type]
                try:
                    async for chunk in stream:
                        parser.write(chunk)
                    parser.finalize()
                except MultipartParseError as exc:
                    raise BadRequest(f"the multipart body is malformed: {exc}") from None
                if not rec.saw_file:
                    raise BadRequest(f"multipart body has no {file_field!r} part", field=file_field)
            elif ctype.startswith(b"multipart/") or ctype == b"application/x-www-form-urlencoded":
                raise UnsupportedMediaType(f"send multipart/form-data or a raw body, not {ctype.decode()}")
            else:
                async for chunk in stream:
                    rec.feed(chunk)
        if rec.size == 0:
            raise BadRequest("the uploaded file is empty", field=file_field)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ReceivedUpload(path, rec.size, rec.hasher.hexdigest(), rec.filename, rec.fields)


def upload_openapi(file_description: str, fields: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The OpenAPI request body of a route that takes a file through ``receive_upload``: multipart with a
    ``file`` part (plus text ``fields``), or the raw file as the body."""
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": file_description}
    }
    properties.update(fields or {})
    multipart = {"schema": {"type": "object", "required": ["file"], "properties": properties}}
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": multipart, "application/octet-stream": raw},
        }
    }
