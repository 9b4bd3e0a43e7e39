"""onnxruntime sessions: load lazily, cache (LRU by count and bytes), run. (Files are checked on upload
by the registry, ``registry/inspect.py``.)

Arrays in, arrays out; no HTTP here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelyard.dtypes import ONNX_TO_NUMPY
from modelyard.errors import InvalidInput, ModelRunFailed


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """Session options shared by every load: few threads, since requests already run in parallel."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


MEASURED_RUNS = 20


@dataclass(slots=True, weakref_slot=True)
class LoadedModel:
    """A ready session with what the hot path needs to check inputs quickly."""

    key: tuple[str, int]
    session: ort.InferenceSession
    size: int
    input_names: list[str]
    input_dtypes: dict[str, np.dtype[Any]]
    input_shapes: dict[str, list[int | str | None]]
    output_names: list[str]
    batch_dynamic: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: int = 0
    mean_run_s: float = 0.0
    # Set by the serving layer and dropped with the session when the cache evicts it.
    timed_run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    batcher: Any = None
    batching_decided: bool = False

    def observe_run(self, seconds: float) -> None:
        """Track a moving average of run time (it decides whether handing the run to a thread pays)."""
        self.runs += 1
        self.mean_run_s = seconds if self.runs == 1 else 0.9 * self.mean_run_s + 0.1 * seconds

    def runs_inline(self, threshold_s: float) -> bool:
        """Whether runs are so short that a thread hand-off (tens of microseconds) costs more than the run.

        Only after enough runs were measured in the inference threads; a model whose runs grow past the
        threshold goes back to the threads.
        """
        return threshold_s > 0 and self.runs >= MEASURED_RUNS and self.mean_run_s < threshold_s

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs in the model's dtype; raises ``InvalidInput`` naming the first problem."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise InvalidInput(
                f"missing input(s) {missing}; the model takes {self.input_names}", field="inputs"
            )
        extra = [n for n in inputs if n not in self.input_dtypes]
        if extra:
            raise InvalidInput(
                f"unknown input(s) {extra}; the model takes {self.input_names}", field="inputs"
            )
        out: dict[str, np.ndarray] = {}
        for name in self.input_names:
            arr = inputs[name]
            want = self.input_dtypes[name]
            if want.kind == "O":
                arr = _as_strings(name, arr)
            elif arr.dtype != want:
                arr = _cast(name, arr, want)
            _check_shape(name, arr.shape, self.input_shapes[name])
            out[name] = arr
        return out

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the session; inputs must have passed ``check_inputs``."""
        try:
            results = self.session.run(None, inputs)
        except Exception as exc:
            raise run_error(exc) from exc
        return {n: np.asarray(r) for n, r in zip(self.output_names, results, strict=True)}


# onnxruntime's exception classes (onnxruntime_pybind11_state) whose failures are the system's, never
# the input's; ``Fail`` is a node refusing its values (a reshape to an impossible shape, an index out of
# range) unless its message says an allocation failed.
SYSTEM_FAILURES = {"RuntimeException", "EngineError", "EPFail", "NoModel", "ModelLoaded", "NotImplemented"}
ALLOCATION_FAILED = ("failed to allocate memory", "bad_alloc", "out of memory")


def run_error(exc: BaseException) -> InvalidInput | ModelRunFailed:
    """What a failed session run means: ``InvalidInput`` when these inputs are to blame (bad values,
    shapes, types), ``ModelRunFailed`` when the system is (out of memory, a crashed session), so callers
    that retry (job chunks) retry only the latter."""
    kind = type(exc).__name__
    text = str(exc)
    if (
        isinstance(exc, MemoryError)
        or kind in SYSTEM_FAILURES
        or any(m in text.lower() for m in ALLOCATION_FAILED)
    ):
        return ModelRunFailed(f"the model runtime failed ({kind}); try again: {text}")
    if kind in ("Fail", "InvalidArgument"):
        return InvalidInput(f"the model could not run on these inputs: {text}", field="inputs")
    return ModelRunFailed(f"the model runtime failed ({kind}); try again: {text}")


def _as_strings(name: str, arr: np.ndarray) -> np.ndarray:
    """onnxruntime string tensors take ``str`` elements; V2 BYTES arrive as ``bytes``."""
    if arr.dtype.kind not in "OSU":
        raise InvalidInput(
            f"input {name!r} has dtype {arr.dtype}, the model expects strings", field=f"inputs.{name}"
        )
    try:
        flat = [v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input {name!r} holds bytes that are not UTF-8 text", field=f"inputs.{name}"
        ) from exc
    return np.array(flat, dtype=np.object_).reshape(arr.shape)


def _cast(name: str, arr: np.ndarray, want: np.dtype[Any]) -> np.ndarray:
    kind_ok = np.can_cast(arr.dtype, want, casting="same_kind") or (
        arr.dtype.kind in "iub" and np.dtype(want).kind in "iuf"
    )
    if arr.dtype.kind == "O" or np.dtype(want).kind == "O" or not kind_ok:
        raise InvalidInput(
            f"input {name!r} has dtype {arr.dtype}, the model expects {np.dtype(want)}",
            field=f"inputs.{name}",
        )
    return arr.astype(want)


def _check_shape(name: str, got: tuple[int, ...], want: list[int | str | None]) -> None:
    if len(got) != len(want) or any(
        isinstance(w, int) and w >= 0 and w != g for g, w in zip(got, want, strict=True)
    ):
        shown = ["?" if not isinstance(w, int) or w < 0 else w for w in want]
        raise InvalidInput(
            f"input {name!r} has shape {list(got)}, the model expects {shown}", field=f"inputs.{name}"
        )


def load_session(key: tuple[str, int], path: Path, size: int, intra_op_threads: int = 1) -> LoadedModel:
    """Load a verified model file into a session."""
    sess = ort.InferenceSession(
        str(path), session_options(intra_op_threads), providers=["CPUExecutionProvider"]
    )
    ins = sess.get_inputs()
    shapes = {i.name: [d if isinstance(d, int) else None for d in (i.shape or [])] for i in ins}
    batch_dynamic = all(s and s[0] is None for s in shapes.values())
    return LoadedModel(
        key=key,
        session=sess,
        size=size,
        input_names=[i.name for i in ins],
        input_dtypes={i.name: ONNX_TO_NUMPY.get(i.type, np.dtype(np.float32)) for i in ins},
        input_shapes={k: list(v) for k, v in shapes.items()},
        output_names=[o.name for o in sess.get_outputs()],
        batch_dynamic=batch_dynamic,
    )


class SessionCache:
    """Loaded models, least recently used evicted first, capped by count and by bytes.

    Concurrent first requests for one model load it once: loads take a per-key lock.
    """

    def __init__(
        self,
        *,
        max_models: int,
        max_bytes: int,
        on_change: Callable[[int], None] | None = None,
        on_evict: Callable[[LoadedModel], None] | None = None,
    ):
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self._on_change = on_change
        self._on_evict = on_evict
        self.loads = 0

    def get(self, key: tuple[str, int]) -> LoadedModel | None:
        """The loaded model for ``key`` (marking it recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def get_or_load(self, key: tuple[str, int], loader: Callable[[], LoadedModel]) -> LoadedModel:
        """The loaded model for ``key``, loading it with ``loader`` once if absent."""
        item = self.get(key)
        if item is not None:
            return item
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            item = self.get(key)
            if item is not None:
                return item
            item = loader()
            with self._lock:
                self.loads += 1
                self._items[key] = item
                evicted = self._evict()
                count = len(self._items)
        self._changed(count, evicted)
        return item

    def _evict(self) -> list[LoadedModel]:
        evicted = []
        while len(self._items) > 1 and (
            len(self._items) > self.max_models or sum(i.size for i in self._items.values()) > self.max_bytes
        ):
            evicted.append(self._items.popitem(last=False)[1])
        return evicted

    def _changed(self, count: int, evicted: list[LoadedModel]) -> None:
        if self._on_evict:
            for item in evicted:
                self._on_evict(item)
        if self._on_change:
            self._on_change(count)

    def drop(self, name: str, version: int | None = None) -> None:
        """Forget loaded sessions of a model (all versions, or one)."""
        with self._lock:
            keys = [k for k in self._items if k[0] == name and (version is None or k[1] == version)]
            dropped = [self._items.pop(k) for k in keys]
            count = len(self._items)
        self._changed(count, dropped)

    def clear(self) -> None:
        """Forget every loaded session."""
        with self._lock:
            dropped = list(self._items.values())
            self._items.clear()
        self._changed(0, dropped)

    def keys(self) -> list[tuple[str, int]]:
        """Keys of loaded models, least recently used first."""
        with self._lock:
            return list(self._items)
