"""The ``python`` stage kind: a callable by import path, once per event, its prints and log records
captured per event, each call bounded by the stage's ``timeout_seconds``: a call past it is abandoned
(see ``_call_within``), that event's run fails with error type ``timeout`` and the batch goes on."""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import (
    Item,
    Outcome,
    StageCall,
    StageEnv,
    StageTimeout,
    side_by_side,
    timed,
)
from modelyard.pipelines.stages.capture import STAGE_LOGGER

CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _call_within(fn: Callable[[], Any], limit: float, what: str) -> Outcome:
    """Call ``fn`` in a daemon thread of its own and wait for it at most ``limit`` seconds.

    A Python thread cannot be killed: a call still running at the limit is abandoned. Its thread runs on
    until the call returns by itself (what it returns then is dropped; what it does meanwhile, it does),
    while the stage run fails with a ``timeout`` error carrying what the call printed so far and where it
    was, and the batch goes on with the next event.
    """
    logs: list[io.StringIO] = []
    result: list[Outcome] = []
    done = threading.Event()

    def call() -> None:
        result.append(timed(fn, logs_to=logs))
        done.set()

    thread = threading.Thread(target=call, name=f"stage-{what}", daemon=True)
    thread.start()
    if done.wait(limit):
        return result[0]
    frame = sys._current_frames().get(thread.ident or -1)
    where = "".join(traceback.format_stack(frame)) if frame is not None else ""
    error = StageTimeout(
        f"stage {what} did not return within its timeout_seconds of {limit:g} s; the call was abandoned"
    )
    return Outcome(
        error=error,
        trace=f"the call was abandoned here:\n{where}" if where else None,
        logs=logs[0].getvalue() if logs else "",
        seconds=limit,
    )


class PythonKind:
    """``type: python``: ``callable`` is ``package.module:function``, called as ``fn(call) -> value``
    with a ``StageCall``; ``input_type`` and ``output_type`` default to ``any``."""

    name = "python"
    fields = frozenset({"callable", "input_type", "output_type"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The import path (imported when applying, by ``service.apply``) and the declared types."""
        target = doc.get("callable")
        if not isinstance(target, str) or not CALLABLE.match(target):
            check.add(f"{where}.callable", "must be an import path like package.module:function")
        accepts = check.type_name(doc.get("input_type"), f"{where}.input_type", "any")
        produces = check.type_name(doc.get("output_type"), f"{where}.output_type", "any")
        return KindConfig({"callable": target}, (accepts,), produces)

    def uses(self, spec: StageSpec) -> Uses:
        """The module of its callable."""
        return Uses(modules={"callable": spec.config["callable"].partition(":")[0]})

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """The callable once per event, the events of a batch side by side up to the stage's
        ``concurrency`` (so it must be thread-safe: its calls block), each call bounded as
        ``_call_within`` says."""
        log = logging.getLogger(STAGE_LOGGER).getChild(spec.name)
        try:
            fn = env.callable(spec.config["callable"])
        except Exception as exc:
            trace = traceback.format_exc()
            return [Outcome(error=exc, trace=trace) for _ in items], ""
        limit = spec.limits.timeout_seconds

        def one(item: Item) -> Outcome:
            call = StageCall(
                item.event, item.event_id, item.params, spec.params, item.inputs, log, env.images
            )
            bound = partial(fn, call)
            return timed(bound) if limit is None else _call_within(bound, limit, spec.name)

        return side_by_side(items, one, spec.limits.concurrency, spec.name), ""


register_stage_kind(PythonKind())
