"""The transport-agnostic inference service that REST, V2 and WebSocket endpoints all call.

It resolves a model version through the registry (cached for a moment), loads its session
lazily into the LRU cache, checks inputs against the signature, and runs them off the event
loop, through the model version's dynamic batcher when its metadata asks for one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from modelyard.db import unit_of_work
from modelyard.heap import trim_heap
from modelyard.metrics import Metrics
from modelyard.registry import service as registry
from modelyard.serving.batching import BatchConfig, DynamicBatcher
from modelyard.serving.offload import DecodePool
from modelyard.serving.runtime import LoadedModel, SessionCache, load_session
from modelyard.storage import Storage

Arrays = dict[str, np.ndarray]
RESOLVE_TTL_S = 2.0
# Every transport decodes requests up to this size, and encodes answers of up to this many output elements,
# on the event loop (a few milliseconds at most); bigger ones elsewhere, so they do not hold up the others:
# JSON bodies of predictions and jobs in a decode process (``offload``), anything else in a thread.
INLINE_DECODE_BYTES = 128 * 1024
INLINE_ENCODE_ELEMENTS = 16 * 1024


@dataclass(frozen=True, slots=True)
class VersionRef:
    """What serving needs to know of a model version, resolved from the registry."""

    name: str
    version: int
    artifact_key: str
    size: int
    signature: dict[str, Any]
    metadata: dict[str, Any]
    latest: int

    @property
    def key(self) -> tuple[str, int]:
        """Cache key of the version."""
        return (self.name, self.version)


class InferenceService:
    """Resolves, loads and runs models; owns the session cache, the batchers and the inference threads."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        storage: Storage,
        cache_dir: Path,
        metrics: Metrics,
        max_models: int,
        max_bytes: int,
        threads: int,
        intra_op_threads: int = 1,
        inline_us: float = 0.0,
        decode_processes: int = 0,
    ):
        self._sessions = sessions
        self._storage = storage
        self._cache_dir = cache_dir
        self.metrics = metrics
        self.cache = SessionCache(
            max_models=max_models, max_bytes=max_bytes, on_change=metrics.loaded_models.set, on_evict=_release
        )
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")
        self.decoder = DecodePool(decode_processes)  # decodes big request bodies (``offload``)
        self._intra = intra_op_threads
        self._refs: dict[tuple[str, str], tuple[float, VersionRef]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[VersionRef]] = {}
        self._counters: dict[tuple[tuple[str, int], str], Any] = {}
        self._inline_s = inline_us / 1e6
        self._unloaded: set[str] = set()

    def close(self) -> None:
        """Stop batchers and inference threads."""
        self.cache.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.decoder.close()

    def resolve_sync(self, name: str, version: int | str = "latest") -> VersionRef:
        """Look the version up in the registry (no cache)."""
        with unit_of_work(self._sessions) as session:
            model, v = registry.resolve_version(session=session, name=name, version=version)
            registry.require_kind(model, "onnx", "predicting")
            return VersionRef(
                name=model.name,
                version=v.version,
                artifact_key=v.artifact_key,
                size=v.size,
                signature=v.signature,
                metadata={**model.meta, **v.meta},
                latest=model.versions[-1].version,
            )

    def resolve_cached_sync(self, name: str, version: int | str = "latest") -> VersionRef:
        """``resolve_sync`` through the same short-lived cache as ``resolve`` (for threads: job submission
        and job steps). A registry change made in this process is seen at once (``invalidate``)."""
        ckey = (name, str(version))
        hit = self._refs.get(ckey)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        ref = self.resolve_sync(name, version)
        self._refs[ckey] = (now + RESOLVE_TTL_S, ref)
        return ref

    async def resolve(self, name: str, version: int | str = "latest") -> VersionRef:
        """The version, from a short-lived cache so the hot path rarely touches the database."""
        ckey = (name, str(version))
        hit = self._refs.get(ckey)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(ckey)
        if pending is not None:  # one lookup per key at a time; the others wait for its answer
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[VersionRef] = loop.run_in_executor(None, self.resolve_sync, name, version)
        self._inflight[ckey] = future
        try:
            ref = await asyncio.shield(future)
        finally:
            self._inflight.pop(ckey, None)
        self._refs[ckey] = (now + RESOLVE_TTL_S, ref)
        return ref

    def invalidate(self, name: str) -> None:
        """Forget cached lookups, sessions and batchers of a model (after a registry change)."""
        for ckey in [k for k in self._refs if k[0] == name]:
            del self._refs[ckey]
        self.cache.drop(name)

    def mark_unloaded(self, name: str) -> None:
        """Record an explicit unload (V2 repository extension): the model is not ready until loaded."""
        self._unloaded.add(name)

    def mark_loaded(self, name: str) -> None:
        """Forget an explicit unload: the model is ready again."""
        self._unloaded.discard(name)

    def is_unloaded(self, name: str) -> bool:
        """Whether the model was unloaded and has not been loaded since."""
        return name in self._unloaded

    def _local_file(self, ref: VersionRef) -> Path:
        path = self._storage.local_path(ref.artifact_key)
        if path is not None:
            return path
        target = self._cache_dir / ref.artifact_key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            self._storage.download_to(ref.artifact_key, tmp)
            tmp.replace(target)
        return target

    def load_sync(self, ref: VersionRef) -> LoadedModel:
        """The loaded session of ``ref``, loading it once if needed (blocking)."""

        def loader() -> LoadedModel:
            self.metrics.model_loads.labels(ref.name).inc()
            loaded = load_session(ref.key, self._local_file(ref), ref.size, self._intra)
            self._unloaded.discard(ref.name)  # loaded on first use after an unload: ready again
            return loaded

        return self.cache.get_or_load(ref.key, loader)

    async def load(self, ref: VersionRef) -> LoadedModel:
        """The loaded session of ``ref``, loading off the event loop when it is not cached."""
        loaded = self.cache.get(ref.key)
        if loaded is not None:
            return loaded
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.load_sync, ref)

    def _timed_run(self, loaded: LoadedModel, model: str) -> Callable[[Arrays], Arrays]:
        if loaded.timed_run is not None:
            return loaded.timed_run
        hist = self.metrics.inference.labels(model)

        def timed(inputs: Arrays) -> Arrays:
            start, cpu = time.perf_counter(), time.thread_time()
            out = loaded.run(inputs)
            hist.observe(time.perf_counter() - start)
            # CPU time of this thread: waiting for the GIL or being preempted is not the model's cost.
            loaded.observe_run(time.thread_time() - cpu)
            return out

        loaded.timed_run = timed
        return timed

    def _batcher(self, ref: VersionRef, loaded: LoadedModel) -> DynamicBatcher | None:
        if loaded.batching_decided:
            batcher: DynamicBatcher | None = loaded.batcher
            return batcher
        config = BatchConfig.from_metadata(ref.metadata) if loaded.batch_dynamic else None
        batcher = None
        if config is not None:
            size_h, delay_h = (
                self.metrics.batch_size.labels(ref.name),
                self.metrics.queue_delay.labels(ref.name),
            )

            def observe(size: int, delays: list[float]) -> None:
                size_h.observe(size)
                for delay in delays:
                    delay_h.observe(delay)

            batcher = DynamicBatcher(self._timed_run(loaded, ref.name), config, self.executor, observe)
        loaded.batcher, loaded.batching_decided = batcher, True
        return batcher

    async def predict(self, ref: VersionRef, inputs: Arrays, transport: str) -> Arrays:
        """Run ``inputs`` through the model version ``ref``; raises ``InvalidInput`` on bad inputs."""
        loaded = await self.load(ref)
        checked = loaded.check_inputs(inputs)
        counter = self._counters.get((ref.key, transport))
        if counter is None:
            counter = self.metrics.predictions.labels(ref.name, str(ref.version), transport)
            self._counters[(ref.key, transport)] = counter
        counter.inc()
        batcher = self._batcher(ref, loaded)
        if batcher is not None:
            return await batcher.submit(checked)
        run = self._timed_run(loaded, ref.name)
        if loaded.runs_inline(self._inline_s):
            return run(checked)
        return await asyncio.get_running_loop().run_in_executor(self.executor, run, checked)

    def predict_sync(self, ref: VersionRef, inputs: Arrays) -> Arrays:
        """Blocking prediction without batching, for workers and jobs."""
        loaded = self.load_sync(ref)
        return loaded.run(loaded.check_inputs(inputs))


def _release(loaded: LoadedModel) -> None:
    """Stop the batcher of a session leaving the cache and break its reference cycles (run closure,
    batcher), so the session is freed at once rather than at the next full garbage collection; then
    hand the freed memory back to the OS (glibc keeps it otherwise, and the cache's cap is about RSS)."""
    if loaded.batcher is not None:
        loaded.batcher.close()
    loaded.batcher, loaded.timed_run = None, None
    trim_heap()
