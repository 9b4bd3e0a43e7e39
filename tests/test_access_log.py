"""The access log writer: lines queued by the request path, written by a background thread, bounded;
and off in the benchmarks, which measure the server without it."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest

from modelyard.access_log import AccessLog


def _lines(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "access.log").read_text().splitlines()]


def test_lines_are_written_by_a_background_thread_not_the_caller(tmp_path: Path) -> None:
    log = AccessLog(tmp_path, flush_seconds=0.01)
    writers: set[str] = set()
    emit = log.handler.emit

    def spy(record: logging.LogRecord) -> None:
        writers.add(threading.current_thread().name)
        emit(record)

    log.handler.emit = spy  # type: ignore[method-assign]
    for i in range(3):
        log.write(request_id=str(i), status=200)
    deadline = time.monotonic() + 10
    while not (tmp_path / "access.log").exists() or len(_lines(tmp_path)) < 3:
        assert time.monotonic() < deadline, "the writer never wrote the lines"
        time.sleep(0.01)
    log.close()
    assert writers == {"access-log"}
    assert [x["request_id"] for x in _lines(tmp_path)] == ["0", "1", "2"]


def test_every_queued_line_is_written_at_close(tmp_path: Path) -> None:
    log = AccessLog(tmp_path, flush_seconds=3600)  # the writer would not wake on its own
    for i in range(2500):
        log.write(request_id=str(i))
    log.close()
    assert [x["request_id"] for x in _lines(tmp_path)] == [str(i) for i in range(2500)]
    log.write(request_id="after")  # a later line starts the writer again
    log.close()
    assert _lines(tmp_path)[-1]["request_id"] == "after"


def test_a_full_queue_drops_lines_counts_them_and_says_so(tmp_path: Path) -> None:
    reported: list[int] = []
    log = AccessLog(tmp_path, capacity=10, flush_seconds=3600, on_drop=reported.append)
    for i in range(15):
        log.write(request_id=str(i))
    assert log.dropped == 5
    log.close()
    lines = _lines(tmp_path)
    assert [x["request_id"] for x in lines[:10]] == [str(i) for i in range(10)]
    assert (lines[10]["dropped"], lines[10]["dropped_total"]) == (5, 5)
    assert reported == [5]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dropped_lines_are_a_metric(settings: object) -> None:
    from fastapi.testclient import TestClient

    from modelyard.app import create_app

    app = create_app(settings)  # type: ignore[arg-type]
    with TestClient(app) as client:
        app.access.log.capacity = 0  # type: ignore[attr-defined]
        client.get("/healthz")
        app.access.log.close()  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text
    assert "modelyard_access_log_dropped_total 1.0" in metrics  # /healthz's line


BENCH = Path(__file__).parents[1] / "bench"
SERVES = re.compile(r'BIN\), "serve"|create_app\(')
"""How a benchmark starts modelyard's HTTP server: the ``modelyard serve`` command or ``create_app``."""
OFF = re.compile(r'"MODELYARD_ACCESS_LOG": "false"|access_log=False')


def test_benchmarks_that_start_the_server_turn_the_access_log_off() -> None:
    serving = [path.name for path in sorted(BENCH.glob("*.py")) if SERVES.search(path.read_text())]
    assert {"serving.py", "jobs.py", "pipelines.py"} <= set(serving)  # the pattern still finds them
    assert [name for name in serving if not OFF.search((BENCH / name).read_text())] == []
