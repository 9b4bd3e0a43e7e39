"""Dynamic batching of decoded arrays, so every transport (REST, V2, WebSocket) gets it.

Requests for one model version wait in a queue; a collector merges them along the batch axis
until ``max_batch_size`` rows are gathered, a preferred size is reached with nothing else waiting,
or the oldest request has waited ``max_queue_delay``. One run serves them all, and the outputs are
split back by each request's row count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Batching settings of one model version, read from its metadata."""

    max_batch_size: int
    max_queue_delay_s: float
    preferred_sizes: tuple[int, ...] = ()

    @classmethod
    def from_metadata(cls, meta: dict[str, object]) -> BatchConfig | None:
        """The config in a model's metadata, or None when batching is off (``max_batch_size`` < 2)."""
        size = meta.get("max_batch_size")
        if not isinstance(size, int) or size < 2:
            return None
        delay = meta.get("max_queue_delay_ms", 2)
        preferred = meta.get("preferred_batch_sizes", [])
        return cls(
            max_batch_size=size,
            max_queue_delay_s=float(delay) / 1000.0 if isinstance(delay, int | float) else 0.002,
            preferred_sizes=tuple(sorted(p for p in preferred if isinstance(p, int)))
            if isinstance(preferred, list)
            else (),
        )


@dataclass(slots=True)
class _Pending:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays]
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Merges concurrent requests of one model version into batched runs; ``observe`` is told each
    batch's size (once per batch) and the queue wait of each of its requests."""

    def __init__(
        self,
        run: Callable[[Arrays], Arrays],
        config: BatchConfig,
        executor: Executor,
        observe: Callable[[int, list[float]], None] | None = None,
    ):
        self._run = run
        self.config = config
        self._executor = executor
        self._observe = observe
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._carry: _Pending | None = None

    async def submit(self, inputs: Arrays) -> Arrays:
        """Run ``inputs`` as part of a batch; their outputs come back alone."""
        rows = int(next(iter(inputs.values())).shape[0]) if inputs else 0
        loop = asyncio.get_running_loop()
        if rows == 0 or rows >= self.config.max_batch_size:
            return await loop.run_in_executor(self._executor, self._run, inputs)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._collect())
        item = _Pending(inputs, rows, loop.create_future())
        self._queue.put_nowait(item)
        return await item.future

    def close(self) -> None:
        """Stop the collector; waiting requests are cancelled."""
        if self._task is not None:
            self._task.cancel()

    async def _collect(self) -> None:
        while True:
            first = self._carry or await self._queue.get()
            self._carry = None
            batch, rows = [first], first.rows
            deadline = first.queued_at + self.config.max_queue_delay_s
            while rows < self.config.max_batch_size:
                if rows in self.config.preferred_sizes and self._queue.empty():
                    break
                try:
                    nxt = (
                        self._queue.get_nowait()
                        if not self._queue.empty()
                        else await asyncio.wait_for(
                            self._queue.get(), max(0.0, deadline - time.perf_counter())
                        )
                    )
                except TimeoutError:
                    break
                if rows + nxt.rows > self.config.max_batch_size or not _compatible(first.inputs, nxt.inputs):
                    self._carry = nxt
                    break
                batch.append(nxt)
                rows += nxt.rows
            asyncio.get_running_loop().create_task(self._dispatch(batch))

    async def _dispatch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        if self._observe:  # the batch's size once, and each request's wait in the queue
            self._observe(len(batch), [now - item.queued_at for item in batch])
        try:
            if len(batch) == 1:
                outs = [await loop.run_in_executor(self._executor, self._run, batch[0].inputs)]
            else:
                merged = {k: np.concatenate([p.inputs[k] for p in batch]) for k in batch[0].inputs}
                result = await loop.run_in_executor(self._executor, self._run, merged)
                outs = _split(result, [p.rows for p in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle_error(batch[0], exc)
                return
            # One bad request must not fail its neighbours: run each alone to place the error.
            for item in batch:
                try:
                    out = await loop.run_in_executor(self._executor, self._run, item.inputs)
                    if not item.future.done():
                        item.future.set_result(out)
                except Exception as exc:
                    _settle_error(item, exc)
            return
        for item, out in zip(batch, outs, strict=True):
            if not item.future.done():
                item.future.set_result(out)


def _settle_error(item: _Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _compatible(a: Arrays, b: Arrays) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape[1:] == b[k].shape[1:] and a[k].dtype == b[k].dtype for k in a
    )


def _split(result: Arrays, rows: list[int]) -> list[Arrays]:
    total = sum(rows)
    if any(v.ndim == 0 or v.shape[0] != total for v in result.values()):
        raise ValueError("an output has no batch axis; cannot split a merged batch")
    bounds = np.cumsum(rows)[:-1]
    parts = {k: np.split(v, bounds) for k, v in result.items()}
    return [{k: parts[k][i] for k in result} for i in range(len(rows))]
