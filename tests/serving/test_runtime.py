"""Session cache: lazy, loaded once under concurrency, LRU by count and bytes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from modelyard.serving.runtime import LoadedModel, SessionCache, load_session
from modelyard.settings import Settings
from tests.conftest import push_model, sqlite_only

pytestmark = sqlite_only  # the in-memory session cache


def test_concurrent_first_requests_load_once(model_dir: Path) -> None:
    cache = SessionCache(max_models=4, max_bytes=10**9)
    calls = []
    lock = threading.Lock()

    def loader() -> LoadedModel:
        with lock:
            calls.append(1)
        time.sleep(0.05)  # a slow load widens the race window; not used for synchronisation
        return load_session(("m", 1), model_dir / "mlp.onnx", 100)

    with ThreadPoolExecutor(8) as pool:
        loaded = list(pool.map(lambda _: cache.get_or_load(("m", 1), loader), range(16)))
    assert len(calls) == 1
    assert all(item is loaded[0] for item in loaded)


def test_lru_evicts_by_count_and_bytes(model_dir: Path) -> None:
    cache = SessionCache(max_models=2, max_bytes=250)
    for v in (1, 2):
        cache.get_or_load(("m", v), lambda v=v: load_session(("m", v), model_dir / "mlp.onnx", 100))
    cache.get(("m", 1))  # 1 is now most recent
    cache.get_or_load(("m", 3), lambda: load_session(("m", 3), model_dir / "mlp.onnx", 100))
    assert cache.keys() == [("m", 1), ("m", 3)]
    cache.get_or_load(("m", 4), lambda: load_session(("m", 4), model_dir / "mlp.onnx", 200))
    assert cache.keys() == [("m", 4)]


def test_models_load_lazily_and_stay_under_cap(
    client: TestClient, model_dir: Path, settings: Settings
) -> None:
    inference = client.app.state.ctx.inference  # type: ignore[attr-defined]
    inference.cache.max_models = 3
    for i in range(6):
        push_model(client, model_dir / "logreg.onnx", f"m{i}")
    assert inference.cache.keys() == []
    for i in range(6):
        assert client.post(f"/api/v1/models/m{i}/predict", json={"rows": [[0.0] * 20]}).status_code == 200
        assert len(inference.cache.keys()) <= 3
    assert inference.cache.keys() == [("m3", 1), ("m4", 1), ("m5", 1)]


def test_rest_batched_model_gives_same_answers(client: TestClient, model_dir: Path) -> None:
    push_model(client, model_dir / "mlp.onnx", "batched", {"max_batch_size": 32, "max_queue_delay_ms": 5})
    push_model(client, model_dir / "mlp.onnx", "plain")
    rows = [[float(i % 7) / 7] * 64 for i in range(5)]
    a = client.post("/api/v1/models/batched/predict", json={"rows": rows}).json()["outputs"]
    b = client.post("/api/v1/models/plain/predict", json={"rows": rows}).json()["outputs"]
    assert a == b


def test_only_measured_fast_models_run_inline(model_dir: Path) -> None:
    loaded = load_session(("m", 1), model_dir / "mlp.onnx", 100)
    assert not loaded.runs_inline(50e-6)  # nothing measured yet: the first runs go to the threads
    for _ in range(20):
        loaded.observe_run(10e-6)
    assert loaded.runs_inline(50e-6)
    assert not loaded.runs_inline(0)  # 0 switches inline runs off
    for _ in range(30):
        loaded.observe_run(500e-6)  # the model got slow (bigger inputs): back to the threads
    assert not loaded.runs_inline(50e-6)


def test_evicted_sessions_are_released(client: TestClient, model_dir: Path) -> None:
    import gc
    import weakref

    inference = client.app.state.ctx.inference  # type: ignore[attr-defined]
    inference.cache.max_models = 1
    push_model(client, model_dir / "mlp.onnx", "a", {"max_batch_size": 8})
    push_model(client, model_dir / "mlp.onnx", "b")
    assert client.post("/api/v1/models/a/predict", json={"rows": [[0.0] * 64]}).status_code == 200
    held = inference.cache.get(("a", 1))
    assert held.batcher is not None and held.timed_run is not None
    first = weakref.ref(held)
    assert client.post("/api/v1/models/b/predict", json={"rows": [[0.0] * 64]}).status_code == 200
    assert held.batcher is None and held.timed_run is None  # eviction broke the session's reference cycles
    del held
    gc.collect()
    assert first() is None  # nothing keeps the evicted session alive
    assert client.post("/api/v1/models/a/predict", json={"rows": [[0.0] * 64]}).status_code == 200
    assert inference.cache.loads == 3


async def test_concurrent_lookups_of_one_model_hit_the_database_once(
    client: TestClient, model_dir: Path
) -> None:
    import asyncio

    push_model(client, model_dir / "logreg.onnx", "once")
    inference = client.app.state.ctx.inference  # type: ignore[attr-defined]
    calls = []
    original = inference.resolve_sync

    def counting(name: str, version: int | str = "latest") -> object:
        calls.append(name)
        return original(name, version)

    inference.resolve_sync = counting
    refs = await asyncio.gather(*[inference.resolve("once") for _ in range(32)])
    assert len(calls) == 1
    assert {r.version for r in refs} == {1}


def test_run_failures_blame_the_input_or_the_system(client: TestClient, model_dir: Path) -> None:
    push_model(client, model_dir / "reshape.onnx", "shaper")
    push_model(client, model_dir / "allocate.onnx", "hungry")
    ok = client.post("/api/v1/models/shaper/predict", json={"rows": [[1, 1], [1, 1]]})
    assert ok.status_code == 200
    impossible = client.post("/api/v1/models/shaper/predict", json={"rows": [[7, 1], [1, 1]]})
    assert (impossible.status_code, impossible.json()["code"]) == (400, "invalid-input")
    huge = client.post("/api/v1/models/hungry/predict", json={"rows": [[2**20, 2**20]]})
    assert (huge.status_code, huge.json()["code"]) == (503, "model-run-failed")
    assert "allocate memory" in huge.json()["detail"]
