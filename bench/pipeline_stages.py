"""Trivial stages for ``bench/pipelines.py`` (imported by path by the server it starts)."""

from __future__ import annotations

import time
from typing import Any

from modelyard.pipelines.stages import StageCall


def first(call: StageCall) -> dict[str, Any]:
    """The size of the raw data (and the event, so no two outputs are alike: no cache hits)."""
    return {"event": call.event, "n": len(call.value)}


def plus_one(call: StageCall) -> dict[str, Any]:
    """The input's number plus one."""
    return {"event": call.event, "n": call.value["n"] + 1}


def join(call: StageCall) -> dict[str, Any]:
    """The sum of every input's number."""
    return {"n": sum(v["n"] for v in call.inputs.values())}


def sleep_50ms(call: StageCall) -> dict[str, Any]:
    """50 ms of waiting (a stand-in for a slow stage), then the input's number."""
    time.sleep(0.05)
    return {"n": call.value["n"]}
