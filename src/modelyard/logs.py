"""Structured JSON logs: one JSON object per line to stderr and, optionally, to rotated files.

The console gets one line per record: when a log file is kept, a record's traceback (its exception's,
or a ``traceback`` extra) goes to the file only, and the console line names the error
(``"error": "OSError: disk on fire"``). Records of the durable engine (DBOS's ``dbos`` logger) are
formatted the same way, and those about an exception that modelyard has already reported (an exception
class with ``already_logged = True``, e.g. the failure a workflow raises after its item was
dead-lettered) stay off the console altogether.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
ENGINE_LOGGER = "dbos"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, with any ``extra=`` fields kept (and its traceback as ``exc``,
    unless ``tracebacks`` is False: then only ``error``, the exception's type and message). A traceback
    formatted elsewhere (a failed job chunk's, caught in a worker) comes as the ``traceback`` extra and is
    treated the same way."""

    def __init__(self, *, tracebacks: bool = True):
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        trace = data.pop("traceback", None)
        if trace and self.tracebacks:
            data["exc"] = trace
        if record.exc_info:
            exc = record.exc_info[1]
            if exc is not None:
                data.setdefault(
                    "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )
            if self.tracebacks:
                data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def _not_already_logged(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not getattr(exc, "already_logged", False)


def _reset(logger: logging.Logger) -> None:
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def setup_logging(level: str, log_dir: Path | None) -> None:
    """Send modelyard's (and the durable engine's) logs as JSON lines to stderr and to
    ``log_dir/modelyard.log`` (rotated)."""
    root = logging.getLogger("modelyard")
    root.setLevel(level.upper())
    engine = logging.getLogger(ENGINE_LOGGER)  # DBOS keeps these handlers instead of adding its own
    _reset(root)
    _reset(engine)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter(tracebacks=log_dir is None))
    engine_stream = logging.StreamHandler(sys.stderr)
    engine_stream.setFormatter(stream.formatter)
    engine_stream.addFilter(_not_already_logged)
    root.addHandler(stream)
    engine.addHandler(engine_stream)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_dir / "modelyard.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        rotating.setFormatter(JsonFormatter())
        root.addHandler(rotating)
        engine.addHandler(rotating)
