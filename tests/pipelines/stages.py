"""Python callable stages for tests (imported by path, as a user's would be)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modelyard.inferrers.inputs import read_input
from modelyard.pipelines.stages import StageCall

log = logging.getLogger("tests.stages")
RELEASE = threading.Event()  # what ``stuck`` calls wait for; tests set it once done with them


def size(call: StageCall) -> dict[str, Any]:
    """Length of the raw data."""
    return {"bytes": len(call.value)}


def double(call: StageCall) -> dict[str, Any]:
    return {"n": call.value["bytes"] * 2 if "bytes" in call.value else call.value["n"] * 2}


def add(call: StageCall) -> dict[str, Any]:
    return {"n": sum(v["n"] if "n" in v else v["bytes"] for v in call.inputs.values())}


def sleepy(call: StageCall) -> dict[str, Any]:
    time.sleep(float(call.stage_params.get("seconds", 0.05)))
    return {"t": time.time()}


def span(call: StageCall) -> dict[str, Any]:
    """Sleeps ``seconds``; returns when it started and ended (perf_counter: one clock in the process)."""
    start = time.perf_counter()
    time.sleep(float(call.stage_params.get("seconds", 0.05)))
    return {"start": start, "end": time.perf_counter()}


def chatty(call: StageCall) -> dict[str, Any]:
    print(f"hello from {call.event}")
    call.log.info("stage logger line")
    return {"ok": True}


def boom(call: StageCall) -> dict[str, Any]:
    print("about to fail")
    raise RuntimeError(f"boom on {call.event}")


def flaky(call: StageCall) -> dict[str, Any]:
    """Fails the first time it sees an event (remembered in a marker file), then succeeds."""
    marker = Path(call.params["marker_dir"]) / call.event_id
    if not marker.exists():
        marker.write_text("x")
        raise ConnectionError("transient")
    return {"second": True}


def vector(call: StageCall) -> np.ndarray:
    return np.arange(4, dtype=np.float32) * len(call.value)


def first_row(call: StageCall) -> pa.Table:
    table: pa.Table = read_input("table", call.value)
    return table.slice(0, 1)


def record(call: StageCall) -> dict[str, Any]:
    """Appends the event id to a file per execution (counts executions across processes)."""
    path = Path(call.params["log_dir"]) / f"{call.stage_params.get('name', 'record')}.log"
    with open(path, "a") as f:
        f.write(call.event_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(float(call.stage_params.get("seconds", 0.0)))
    return {"event": call.event}


def join(call: StageCall) -> dict[str, Any]:
    return {"inputs": sorted(call.inputs)}


def stuck(call: StageCall) -> dict[str, Any]:
    """Does not return in time for an event whose params say ``stuck``: it waits for ``RELEASE``."""
    if call.params.get("stuck"):
        print(f"{call.event} waits")
        RELEASE.wait()
    return {"ok": True}
