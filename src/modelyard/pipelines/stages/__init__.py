"""What a stage is given and gives back, whatever its kind: each event of a batch is an ``Item`` (its
inputs, already read) and comes back as an ``Outcome`` (the value, or the exception, its captured logs and
how long it took). A Python callable stage receives a ``StageCall``. Each kind runs its batches in its own
module (``inferrer``, ``model``, ``python``, ``command``), registered in ``spec.kinds``.

A kind that reads large files by parts says so (``reads_files = True``): its items then get the raw data
and every stored upstream output (all but inline JSON) as a local file ``Path`` instead of its bytes, and
a folder of their own (``Item.scratch``) where the stage may write a large output and return it as a
``LocalFile``, which is moved into the artifact store, never read into memory.
"""

from __future__ import annotations

import importlib
import io
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from modelyard.inferrers.features import Predict
from modelyard.inferrers.images import DEFAULT_LIMITS, ImageLimits, decode_image
from modelyard.inferrers.onnx import bind_model
from modelyard.pipelines.spec import RAW
from modelyard.pipelines.stages.budget import ByteBudget
from modelyard.pipelines.stages.capture import capture
from modelyard.serving.service import InferenceService

DEFAULT_IMAGE_BUDGET = 1024 * 1024 * 1024  # as MODELYARD_PIPELINE_WORKER_IMAGE_BYTES
TIMEOUT = "timeout"  # the error type of a stage run that ran past its stage's timeout_seconds


class StageTimeout(TimeoutError):
    """One event's call of a stage ran past the stage's ``timeout_seconds`` (retried like any failure)."""


def error_type(exc: BaseException) -> str:
    """What a stage run's failure is called in its row and in the error report."""
    return TIMEOUT if isinstance(exc, StageTimeout) else type(exc).__name__


@dataclass(slots=True)
class Item:
    """One event as a stage sees it: inputs by upstream name (``raw`` is the raw bytes; for a kind that
    reads files, a local ``Path`` of each stored input) and, for such a kind, a folder of its own for the
    files it writes (removed once the outputs are stored)."""

    event_id: str
    event: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    scratch: Path | None = None


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A stage's output written to a local file (in its item's ``scratch``): stored as the stage's declared
    type under the suffix ``ext`` by moving the file into the artifact store, never read into memory."""

    path: Path
    ext: str


@dataclass(slots=True)
class Outcome:
    """What a stage made of one event."""

    value: Any = None
    error: BaseException | None = None
    trace: str | None = None
    logs: str = ""
    seconds: float = 0.0


@dataclass(slots=True)
class StageCall:
    """What a Python callable stage receives: ``fn(call) -> value``.

    ``inputs`` maps each upstream stage name (``raw`` for the raw data) to its output: bytes (raw data,
    images), a JSON value, or a numpy array. ``value`` is the only input when there is one.
    """

    event: str
    event_id: str
    params: dict[str, Any]
    stage_params: dict[str, Any]
    inputs: dict[str, Any]
    log: Any = field(default=None)
    image_limits: ImageLimits = DEFAULT_LIMITS

    @property
    def value(self) -> Any:
        """The single input."""
        if len(self.inputs) != 1:
            raise ValueError(f"the stage has {len(self.inputs)} inputs; read call.inputs[name]")
        return next(iter(self.inputs.values()))

    def image(self, name: str | None = None) -> Image.Image:
        """An input (the single one by default) decoded as an RGB image."""
        data = self.value if name is None else self.inputs[name]
        return data if isinstance(data, Image.Image) else decode_image(bytes(data), limits=self.image_limits)


@dataclass(slots=True)
class StageEnv:
    """What stages may use from the process: the inference service, image limits, the worker's budget
    of decoded image memory (``MODELYARD_PIPELINE_WORKER_IMAGE_BYTES``) its batches share, and where the
    tiles of large images run (``MODELYARD_ANALYSIS_DASK_SCHEDULER``: a Dask scheduler address, or None
    for ``analysis_workers`` threads of this process)."""

    inference: InferenceService
    images: ImageLimits = DEFAULT_LIMITS
    image_budget: ByteBudget = field(default_factory=lambda: ByteBudget(DEFAULT_IMAGE_BUDGET))
    dask_scheduler: str | None = None
    analysis_workers: int = 1
    _callables: dict[str, Callable[[StageCall], Any]] = field(default_factory=dict)
    _models: dict[tuple[Any, ...], tuple[Predict, str]] = field(default_factory=dict)

    def callable(self, path: str) -> Callable[[StageCall], Any]:
        """The function at ``module:attr`` (imported once)."""
        fn = self._callables.get(path)
        if fn is None:
            module, _, attr = path.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise TypeError(f"{path} is not callable")
            fn = self._callables[path] = obj
        return fn

    def model(
        self, name: str, version: Any, input_name: str | None, output_name: str | None
    ) -> tuple[Predict, str]:
        """A bound model and the version it resolved to (``name@N``), re-resolved on every batch."""
        predict, ref = bind_model(
            self.inference, name, version, input_name=input_name, output_name=output_name
        )
        return predict, f"{ref.name}@{ref.version}"


def single(item: Item) -> Any:
    """The only input of an item."""
    return next(iter(item.inputs.values()))


def side_by_side(items: list[Item], one: Callable[[Item], Outcome], limit: int, name: str) -> list[Outcome]:
    """``one`` over every item, up to ``limit`` at once in threads of this batch, outcomes in item order.

    For stages whose calls block (Python callables that sleep or do I/O, commands): a batch of slow
    events takes about as long as its slowest call, not the sum of them. Logs are captured per thread,
    so each event keeps its own."""
    workers = min(limit, len(items))
    if workers <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"stage-{name}") as pool:
        return list(pool.map(one, items))


def attempt(fn: Callable[[], Any]) -> Outcome:
    """Call ``fn``: its value or its exception, and how long it took (its logs are not captured)."""
    start = time.perf_counter()
    try:
        out = Outcome(value=fn())
    except Exception as exc:
        out = Outcome(error=exc, trace=traceback.format_exc())
    out.seconds = time.perf_counter() - start
    return out


def timed(fn: Callable[[], Any], *, logs_to: list[io.StringIO] | None = None) -> Outcome:
    """Call ``fn`` capturing what it prints and logs (the buffer is also put in ``logs_to``, if given)."""
    with capture() as logs:
        if logs_to is not None:
            logs_to.append(logs)
        out = attempt(fn)
    out.logs = logs.getvalue()
    return out


__all__ = [
    "RAW",
    "Item",
    "LocalFile",
    "Outcome",
    "StageCall",
    "StageEnv",
    "StageTimeout",
    "attempt",
    "error_type",
    "side_by_side",
    "single",
    "timed",
]
