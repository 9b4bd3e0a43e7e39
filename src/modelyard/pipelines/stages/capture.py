"""Per-thread capture of what a stage prints and logs, so each stage run keeps its own logs while many
run at once in one process. ``sys.stdout``/``sys.stderr`` are wrapped once by a writer that sends text
to the current thread's buffer while a capture is open, and through unchanged otherwise."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_local = threading.local()
_lock = threading.Lock()
MAX_CHARS = 1_000_000  # per stage run; the rest is cut with a note


class _ThreadTee(io.TextIOBase):
    """A text stream writing to the capturing thread's buffer, or to the stream it wraps."""

    def __init__(self, inner: TextIO, name: str):
        self.inner, self.name = inner, name

    def write(self, text: str) -> int:
        buf: io.StringIO | None = getattr(_local, "buffer", None)
        if buf is None:
            return self.inner.write(text)
        if buf.tell() < MAX_CHARS:
            buf.write(
                text
                if self.name == "stdout"
                else "".join(f"[stderr] {line}" for line in text.splitlines(True))
            )
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()


class _ThreadHandler(logging.Handler):
    """Copies log records into the capturing thread's buffer."""

    def emit(self, record: logging.LogRecord) -> None:
        buf: io.StringIO | None = getattr(_local, "buffer", None)
        if buf is not None and buf.tell() < MAX_CHARS:
            buf.write(f"[{record.levelname.lower()}] {record.name}: {record.getMessage()}\n")


_handler = _ThreadHandler(level=logging.DEBUG)
STAGE_LOGGER = "modelyard.stage"


def _install() -> None:
    with _lock:
        if not isinstance(sys.stdout, _ThreadTee):
            sys.stdout = _ThreadTee(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ThreadTee):
            sys.stderr = _ThreadTee(sys.stderr, "stderr")
        for name in ("", STAGE_LOGGER):
            logger = logging.getLogger(name)
            if _handler not in logger.handlers:
                logger.addHandler(_handler)
        stage = logging.getLogger(STAGE_LOGGER)
        if stage.level != logging.DEBUG:  # setting it clears every logger's level cache: only once
            stage.setLevel(logging.DEBUG)
        stage.propagate = False  # a stage's records belong to its run's logs, not the server's


@contextmanager
def capture() -> Iterator[io.StringIO]:
    """Collect this thread's prints and log records until the block ends."""
    _install()
    buf = io.StringIO()
    outer = getattr(_local, "buffer", None)
    _local.buffer = buf
    try:
        yield buf
    finally:
        _local.buffer = outer
        if buf.tell() >= MAX_CHARS:
            buf.write(f"\n[cut at {MAX_CHARS} characters]\n")
