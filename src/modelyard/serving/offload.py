"""Big JSON prediction and job bodies decoded in worker processes, so that no one request holds up others.

Parsing JSON (orjson) and making nested lists an array (numpy) are each one C call that holds the
interpreter: in a thread they still stall every other request (a 100,000-row ``predict`` held them for
0.6-1.4 s). A prediction body over ``INLINE_DECODE_BYTES`` is therefore decoded by a small pool of
processes (``MODELYARD_PREDICT_DECODE_PROCESSES``; 0 decodes in a thread instead), which sends back arrays:
the server copies bytes out and arrays in. The functions a process runs are the same the server runs on
small bodies (``rest``, ``v2``, ``jobs.inputs``): one way to decode, wherever it runs. (A big job body's
inline rows are read a window at a time as it streams in, ``jobs.streaming``; only a body that reading
gives up on is decoded here.)

The pool starts at the first big body (each process takes ~1 s to start and ~100 MB), and a process
that dies (out of memory) fails its request with 503 and is replaced.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
import orjson

from modelyard.errors import BadRequest, Unavailable
from modelyard.jobs.inputs import Features, inline_array, read_request, table_of
from modelyard.jobs.schemas import JobCreate
from modelyard.serving import v2
from modelyard.serving.rest import decode_inputs

T = TypeVar("T")


def loads(body: bytes) -> Any:
    """The JSON in a prediction body; ``BadRequest`` when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


def job_rows(data: Any, signature: dict[str, Any]) -> list[Any] | None:
    """The rows of a prediction a batch job could run (``rows``, or the single input of a model with one
    2-D input), or None when it cannot be a job."""
    inputs = signature["inputs"]
    if not isinstance(data, dict) or len(inputs) != 1 or len(inputs[0]["shape"]) != 2:
        return None
    rows = data.get("rows")
    if rows is None and isinstance(data.get("inputs"), dict) and len(data["inputs"]) == 1:
        rows = data["inputs"].get(inputs[0]["name"])
    return rows if isinstance(rows, list) else None


@dataclass(frozen=True, slots=True)
class RestDecoded:
    """A REST prediction body decoded: the model's ``inputs``, or, when it is to be a batch job, its
    ``rows`` as the job's input array."""

    inputs: dict[str, np.ndarray] | None = None
    rows: np.ndarray | None = None


def decode_rest(
    body: bytes, signature: dict[str, Any], metadata: dict[str, Any], job_over: int | None
) -> RestDecoded:
    """Decode a REST prediction; with ``job_over`` (a row count, 0 for any), rows past it are checked and
    made into a job's input instead."""
    data = loads(body)
    if job_over is not None:
        rows = job_rows(data, signature)
        if rows is not None and len(rows) > job_over:
            return RestDecoded(rows=inline_array(rows, Features.from_signature(signature, metadata)))
    return RestDecoded(inputs=decode_inputs(data, signature, metadata))


def decode_job(source: bytes | Path) -> tuple[JobCreate, Any]:
    """A JSON job request (``jobs.inputs.read_request``), from its bytes or the file it was spooled to, with
    its rows, when they are lists, already one checked float64 table (``table_of``): the server only fits it
    to the model. Rows keyed by column names come back as parsed (the model's columns order them)."""
    request, rows = read_request(source if isinstance(source, bytes) else source.read_bytes())
    if isinstance(rows, list) and rows and not isinstance(rows[0], dict):
        rows = table_of(rows, None)
    return request, rows


@dataclass(frozen=True, slots=True)
class V2Limits:
    """The caps a V2 body is decoded within (from the settings)."""

    max_request_bytes: int
    max_json_body_bytes: int
    max_tensor_elements: int


def decode_v2(body: bytes, headers: Mapping[str, str], limits: V2Limits) -> v2.InferRequest:
    """A V2 inference request from its body and (lower-case) headers: decompressed if it says it is,
    within the limits."""
    return v2.decode_body(
        body,
        headers,
        max_request_bytes=limits.max_request_bytes,
        max_json_body_bytes=limits.max_json_body_bytes,
        max_tensor_elements=limits.max_tensor_elements,
    )


def _ready() -> None:
    """Run once in each new process: the imports are done, nothing else to set up."""


class DecodePool:
    """The processes that decode big bodies: started at first use, ``processes`` of them at most."""

    def __init__(self, processes: int):
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a process (in a thread when the pool has no processes); its exceptions, domain
        errors included, are raised here."""
        if self.processes <= 0:
            return await anyio.to_thread.run_sync(partial(fn, *args))
        pool = self._pool or self._start()
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            self._replace(pool)
            raise Unavailable("the process decoding the request died (out of memory?); retry") from None

    def close(self) -> None:
        """Stop the processes (queued work is cancelled)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the server has threads, and a forked child would inherit their locks
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_ready)
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
