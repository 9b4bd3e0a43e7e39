"""Inline job rows read as the request body streams in, never held whole.

A job request with inline rows can be as big as the body limit allows. Parsed whole, its rows would be a
Python list of lists of floats some ten times the body's size; here they are read in windows instead:

- the body is spooled to a temporary file as it arrives (only the error path reads it back);
- a small scanner finds the top-level ``"rows"`` key, and the rest of the object (model, options...) is
  kept apart, to be parsed and validated as every job request is (``inputs.read_request``);
- the rows array is cut at row boundaries into windows of about ``WINDOW`` bytes, each parsed by orjson
  and made a float64 table by ``inputs.table_of`` (the one conversion every JSON route uses), and its
  values appended to a second temporary file: memory holds one window, whatever the body's size.

Only rows given as lists of numbers are read so. Anything else (rows keyed by column names, a value that
is not a number, a syntax error, rows of unequal length) makes the stream give up, and the spooled body is
parsed whole as before (in a worker process: ``serving.offload.decode_job``): one parser decides every
answer a bad body gets, so each is the same 400 or 422, naming the same row, as it was.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelyard.errors import ModelyardError
from modelyard.jobs.inputs import read_request, table_of
from modelyard.jobs.schemas import JobCreate

WINDOW = 1024 * 1024
HEAD_LIMIT = 1024 * 1024  # the object's other fields are small; past this the body is parsed whole
# what the rows array may hold to be read in windows: numbers, brackets, commas and whitespace
ROWS_BYTES = b"0123456789+-.eE[], \t\r\n"
# one token of the object around the rows: a string, a structural character, whitespace, or a scalar
TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[ \t\r\n]+|[^ \t\r\n"\[\]{}:,]+', re.DOTALL)
OPEN, CLOSE, COMMA = ord("["), ord("]"), ord(",")


class _GiveUp(Exception):
    """The body is not plain rows of numbers, or not well formed: it is parsed whole instead."""


@dataclass(frozen=True, slots=True)
class StreamedRows:
    """Rows read in windows: ``count`` rows of ``width`` float64 values, row-major in ``path``."""

    path: Path
    count: int
    width: int


class RowStream:
    """Reads a job request body fed in chunks (``feed``), then ``finish`` says what it held."""

    def __init__(self, tmp_dir: Path):
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # open as long as the stream is, closed and removed by ``close``
        self._spool = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="job-", suffix=".json", delete=False)  # noqa: SIM115
        self._values = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="job-", suffix=".f64", delete=False)  # noqa: SIM115
        self._pending = bytearray()  # bytes fed but not yet read
        self._head = bytearray()  # the object up to its rows value
        self._tail = bytearray()  # the object after it
        self._state = "head"  # head -> rows -> tail, or whole (gave up)
        self._depth = 0  # depth in the object while reading the head
        self._key = False  # the next string in the top-level object is a key
        self._last_key: bytes | None = None
        self._first = True  # no window of rows read yet
        self.count = 0
        self.width: int | None = None

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body (a big one a window at a time)."""
        self._spool.write(chunk)
        for start in range(0, len(chunk), WINDOW):
            if self._state == "whole":
                return
            self._read(chunk[start : start + WINDOW])

    def _read(self, chunk: bytes) -> None:
        self._pending += chunk
        try:
            if self._state == "head":
                self._read_head()
            if self._state == "rows":
                self._read_rows()
            if self._state == "tail":
                self._tail += self._pending
                self._pending.clear()
                if len(self._tail) > HEAD_LIMIT:
                    raise _GiveUp
        except _GiveUp:
            self._give_up()

    @property
    def body(self) -> Path:
        """The whole body, spooled: what is parsed whole when ``finish`` says so."""
        return Path(self._spool.name)

    def finish(self) -> tuple[JobCreate, StreamedRows] | None:
        """The request without its rows, and the rows read in windows; None when the body is to be parsed
        whole (``body``), which then gives its answer, a 400 or 422 included, as it always did."""
        self._spool.flush()
        self._values.flush()
        # a second "rows" key after the first (the last one counts) is left to the whole parse
        if self._state != "tail" or b'"rows"' in self._tail or b"\\u" in self._tail:
            return None
        if self.count == 0 or self.width is None:
            return None
        try:
            request, _ = read_request(bytes(self._head) + b"[]" + bytes(self._tail))
        except ModelyardError:
            return None
        return request, StreamedRows(Path(self._values.name), self.count, self.width)

    def close(self) -> None:
        """Remove the temporary files."""
        for f in (self._spool, self._values):
            f.close()
            Path(f.name).unlink(missing_ok=True)

    def _give_up(self) -> None:
        self._state = "whole"
        self._pending.clear()
        self._head.clear()
        self._tail.clear()

    def _read_head(self) -> None:
        """Tokens of the object until the value of its top-level ``rows`` key begins."""
        buf, pos = self._pending, 0
        while pos < len(buf):
            match = TOKEN.match(buf, pos)
            if match is None or match.end() == len(buf):
                break  # an unfinished token: wait for more
            token = match.group()
            pos = match.end()
            if token[0] in b" \t\r\n":
                continue
            if token in (b"{", b"["):
                self._depth += 1
                self._key = token == b"{" and self._depth == 1
            elif token in (b"}", b"]"):
                self._depth -= 1
                if self._depth <= 0:
                    raise _GiveUp  # the object ended without rows: not a job with inline rows
            elif token == b"," and self._depth == 1:
                self._key = True
            elif token == b":" and self._depth == 1 and self._last_key == b"rows":
                rest = bytes(buf[pos:]).lstrip(b" \t\r\n")
                if not rest:
                    pos = match.start()  # read the colon again once the value has begun
                    break
                if rest[0] != OPEN:
                    raise _GiveUp
                start = len(buf) - len(rest)
                self._head += buf[:start]
                del buf[: start + 1]
                self._state, self._depth = "rows", 1
                return
            elif self._key and token[0] == ord('"'):
                self._key = False
                try:
                    key = orjson.loads(token)
                except orjson.JSONDecodeError:
                    raise _GiveUp from None
                self._last_key = b"rows" if key == "rows" else b""
        self._head += buf[:pos]
        del buf[:pos]
        if len(self._head) > HEAD_LIMIT:
            raise _GiveUp

    def _read_rows(self) -> None:
        """The rows read up to the last whole row in what is pending; the tail after the array's end.

        What is pending always starts between rows (depth 1: inside the array, outside any row). Only the
        brackets are looked at one by one; ``table_of`` refuses anything but rows of numbers in a window."""
        buf = np.frombuffer(bytes(self._pending), dtype=np.uint8)
        brackets = np.flatnonzero((buf == OPEN) | (buf == CLOSE))
        depth = 1 + np.cumsum(np.where(buf[brackets] == OPEN, 1, -1))  # after each bracket
        ends = np.flatnonzero(depth == 0)
        stop = int(brackets[ends[0]]) if ends.size else len(buf)  # where the rows array ends, if here
        if self._pending[:stop].translate(None, ROWS_BYTES):
            raise _GiveUp  # not only numbers (objects, strings, literals, or a syntax error)
        inside = depth[: ends[0]] if ends.size else depth
        if inside.size and inside.max() > 2:
            raise _GiveUp  # nested deeper than rows of numbers
        if ends.size:
            self._read_window(bytes(self._pending[:stop]), last=True)
            self._tail += self._pending[stop + 1 :]
            self._pending.clear()
            self._state = "tail"
            return
        row_ends = np.flatnonzero(inside == 1)  # closing brackets of rows
        if row_ends.size:
            end = int(brackets[row_ends[-1]]) + 1
            self._read_window(bytes(self._pending[:end]), last=False)
            del self._pending[:end]

    def _read_window(self, text: bytes, *, last: bool) -> None:
        """Rows ``text`` (whole rows, the commas between them) appended to the values."""
        text = text.strip(b" \t\r\n")
        if not self._first:
            if not text:
                if last:
                    return
                raise _GiveUp
            if text[0] != COMMA:
                raise _GiveUp  # rows not separated by a comma
            text = text[1:].lstrip(b" \t\r\n")
            if not text:
                raise _GiveUp  # a trailing comma
        if not text:
            return
        self._first = False
        try:
            table = table_of(orjson.loads(b"[" + text + b"]"), None)
        except (orjson.JSONDecodeError, ModelyardError):
            raise _GiveUp from None
        width = table.shape[1]
        if width == 0 or (self.width is not None and width != self.width):
            raise _GiveUp  # empty rows, or rows of unequal length: the whole body's parse says how
        self.width = width
        self.count += table.shape[0]
        self._values.write(np.ascontiguousarray(table, dtype=np.float64).tobytes())


def write_npy(rows: StreamedRows, dtype: np.dtype[Any], path: Path) -> int:
    """Write streamed rows to ``path`` as a .npy array of ``dtype``, cast a window at a time; its size."""
    values = np.memmap(rows.path, dtype=np.float64, mode="r", shape=(rows.count, rows.width))
    block_rows = max(1, WINDOW // max(1, rows.width * values.itemsize))
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": values.shape}
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, rows.count, block_rows):
            f.write(values[start : start + block_rows].astype(dtype).tobytes())
    del values
    return os.path.getsize(path)
