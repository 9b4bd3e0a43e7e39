"""Console and file logs: one line per failure on the console, the traceback in the JSON log file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbos._logger import init_logger

from modelyard.jobs.workflows import WorkFailed
from modelyard.logs import setup_logging


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    yield
    for name in ("modelyard", "dbos"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def _fail(logger: logging.Logger, exc: Exception, msg: str) -> None:
    try:
        raise exc
    except Exception as caught:
        logger.error(msg, exc_info=caught)


def test_a_failure_is_one_console_line_and_a_traceback_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_loggers: None
) -> None:
    setup_logging("INFO", tmp_path)
    init_logger()  # what constructing DBOS does: it must keep our handlers
    _fail(logging.getLogger("modelyard.jobs"), OSError("disk on fire\nsecond line"), "chunk failed")
    _fail(logging.getLogger("dbos"), RuntimeError("lost connection"), "Exception encountered in workflow:")
    console = capsys.readouterr().err.splitlines()
    assert len(console) == 2
    first, second = (json.loads(line) for line in console)
    assert (first["msg"], first["error"]) == ("chunk failed", "OSError: disk on fire")
    assert (second["logger"], second["error"]) == ("dbos", "RuntimeError: lost connection")
    assert "exc" not in first and "exc" not in second
    logged = [json.loads(line) for line in (tmp_path / "modelyard.log").read_text().splitlines()]
    assert [x["logger"] for x in logged] == ["modelyard.jobs", "dbos"]
    assert all("Traceback" in x["exc"] for x in logged)


def test_an_already_reported_workflow_failure_stays_off_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_loggers: None
) -> None:
    setup_logging("INFO", tmp_path)
    init_logger()
    dead = WorkFailed("chunk 3 of job abc: OSError: disk on fire")
    _fail(logging.getLogger("dbos"), dead, "Exception encountered in asynchronous workflow:")
    assert capsys.readouterr().err == ""
    (logged,) = (json.loads(line) for line in (tmp_path / "modelyard.log").read_text().splitlines())
    assert "WorkFailed: chunk 3 of job abc" in logged["exc"]


def test_without_a_log_file_the_console_keeps_the_traceback(
    capsys: pytest.CaptureFixture[str], restore_loggers: None
) -> None:
    setup_logging("INFO", None)
    _fail(logging.getLogger("modelyard.app"), ValueError("bad"), "unhandled error")
    (line,) = capsys.readouterr().err.splitlines()
    assert "Traceback" in json.loads(line)["exc"]


def test_a_traceback_formatted_elsewhere_goes_to_the_file_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_loggers: None
) -> None:
    setup_logging("INFO", tmp_path)
    trace = "Traceback (most recent call last):\n  ...\nOSError: disk on fire\n"
    logging.getLogger("modelyard.jobs").warning(
        "job chunk dead", extra={"detail": "OSError", "traceback": trace}
    )
    (line,) = (json.loads(x) for x in capsys.readouterr().err.splitlines())
    assert (line["detail"], "traceback" in line, "exc" in line) == ("OSError", False, False)
    (logged,) = (json.loads(x) for x in (tmp_path / "modelyard.log").read_text().splitlines())
    assert logged["exc"] == trace and "traceback" not in logged
