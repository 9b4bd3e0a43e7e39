"""Catalog benchmark: every vector backend side by side in one run, on the same data and queries.

N records (100,000 in a full pass) with a ``bucket`` attribute (0-9), a two-word title and a 384-dim
float32 vector each, drawn as clustered Gaussian data (64 centres) so neighbours are meaningful. k = 10,
cosine. Every row gives p50/p99 and recall@10 against a numpy brute-force reference computed in the same
run; "filtered" keeps 10% of records (``attributes.bucket == 3``).

Through the search service (``catalog.search``, not HTTP):

1. **ingest**: records through the bulk ingest service, then their vectors as inferences (goal <= 60 s).
2. **exact, embedded** (SQLite + in-process matrix, no ANN): unfiltered (goal p50 <= 10 ms), filtered
   (goal <= 8 ms), and filtered *uncached* (the filter's record set and rows found anew each query,
   from the per-field columns), recall 1.0.
3. **ANN, embedded** (hnswlib HNSW, built in the background, persisted): unfiltered (goal recall >= 0.99
   at p50 <= 1 ms) and filtered (goal >= 0.98 at p50 <= 2 ms); build and load times.
4. **pgvector** (PostgreSQL + pgvector started as the tests start it, ``tests.pgvector_server``: pgvector
   0.8.2 where its build runs, else 0.6.2): the same records ingested through the service, the vectors
   copied in, the HNSW index built, then the same queries.
5. **hybrid** text + vector by reciprocal rank (goal p50 <= 20 ms), and one unfiltered query kind
   **through HTTP** (uvicorn on loopback, httpx), and unfiltered and filtered once more over HTTP from a
   real ``modelyard serve`` as ``make run`` starts it (worker on, default settings and logging, so the ANN
   graph answers above its threshold): what a user gets.
6. **switch under load** (embedded and pgvector): version 2 of every vector stored, then made current
   while two threads query; goal: the switch is atomic, no result mixes the versions (each result's
   distances are checked against both versions' vectors), the ones before it all version 1 and the ones
   after it all version 2; then rolled back. It runs last in each part, so no other row measures a
   collection that has two versions.

The same queries run directly on each library: numpy, usearch, hnswlib (unfiltered; filtered with
over-fetch for usearch, a filter function for hnswlib) and sqlite-vec (a ``vec0`` table with the bucket
as a metadata column).

Prints a table and writes JSON to ``bench/results/catalog.json`` (``catalog-quick.json`` with --quick).

    .venv/bin/python bench/catalog.py            # full pass (100,000 records)
    .venv/bin/python bench/catalog.py --quick    # smoke run (5,000 records)
    .venv/bin/python bench/catalog.py --skip pgvector,hnswlib
    .venv/bin/python bench/catalog.py --only pgvector --queries 100   # one part (pgvector: ~5 minutes)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from modelyard.app import build_context, create_app  # noqa: E402
from modelyard.catalog import binding, ingest, search, service  # noqa: E402
from modelyard.catalog.schemas import CollectionCreate, SearchQuery  # noqa: E402
from modelyard.context import AppContext  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

DIM, K, CENTRES = 384, 10, 64
COLLECTION = "bench"
ADMIN = "bench-admin-key-0123456789"
COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "grey", "pink", "olive", "navy"]
THINGS = ["fox", "harbour", "bridge", "portrait", "river", "orchard", "market", "tower", "garden", "boat"]
FILTER = {"field": "attributes.bucket", "value": 3}
PARTS = {"embedded", "pgvector", "libraries"}
PG_SETTINGS = {"shared_buffers": "1GB"}
PG_WARM_QUERIES = 200  # other queries of each kind that read the table and index in before measuring
Query = Callable[[np.ndarray], list[int]]


def title(i: int) -> str:
    """Two words from small vocabularies (about 1% of titles share both words of a query)."""
    return f"{COLOURS[i % len(COLOURS)]} {THINGS[(i // len(COLOURS)) % len(THINGS)]} {i}"


def data(n: int, seed: int = 0) -> np.ndarray:
    """Clustered Gaussian float32 vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    return centres[rng.integers(0, CENTRES, n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)


def queries_near(vecs: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Records' vectors moved a little: queries with neighbours in the data."""
    rng = np.random.default_rng(seed)
    return vecs[rng.integers(0, len(vecs), n)] + 0.2 * rng.normal(size=(n, DIM)).astype(np.float32)


def jsonl(n: int) -> Iterator[bytes]:
    for start in range(0, n, 1000):
        lines = (
            json.dumps({"id": f"r{i}", "title": title(i), "attributes": {"bucket": i % 10}})
            for i in range(start, min(n, start + 1000))
        )
        yield ("\n".join(lines) + "\n").encode()


class Reference:
    """numpy brute force over the unit vectors: the truth every row's recall is measured against."""

    def __init__(self, vecs: np.ndarray):
        self.unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.rows = np.flatnonzero(np.arange(len(vecs)) % 10 == 3)
        self.sub = self.unit[self.rows]

    def top(self, q: np.ndarray, filtered: bool) -> list[int]:
        mat = self.sub if filtered else self.unit
        d = 1.0 - mat @ (q / np.linalg.norm(q))
        top = np.argpartition(d, K - 1)[:K]
        top = top[np.argsort(d[top], kind="stable")]
        return (self.rows[top] if filtered else top).tolist()  # type: ignore[no-any-return]


def measure(queries: np.ndarray, run: Query, truth: list[set[int]]) -> dict[str, Any]:
    """p50/p99 and recall@10 of ``run`` over the queries."""
    times, recalls = [], []
    run(queries[0])  # warm
    for q, want in zip(queries, truth, strict=True):
        start = time.perf_counter()
        got = run(q)
        times.append(time.perf_counter() - start)
        recalls.append(len(set(got[:K]) & want) / K)
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 3),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "queries": len(queries),
    }


def via_service(ctx: AppContext, filtered: bool, *, exact: bool = False, cold: bool = False) -> Query:
    """k nearest through the search service; ``cold``: forget the filter's record set and rows first."""

    def run(q: np.ndarray) -> list[int]:
        vector = {"field": "embed.vector", "vector": q.tolist(), "k": K, "exact": exact}
        body = {"vector": vector, "limit": K, "filter": FILTER if filtered else None, "inferred": []}
        if cold:
            caches = ctx.catalog.get()
            caches.allowed.clear()
            for index in caches.indexes.values():
                index._subsets.clear()
        result = search.search(ctx, COLLECTION, SearchQuery.model_validate(body))
        return [int(h.record.id[1:]) for h in result.hits]

    return run


def settings_for(folder: Path, *, threshold: int, database_url: str = "") -> Settings:
    return Settings(
        data_dir=folder,
        database_url=database_url,
        log_to_file=False,
        access_log=False,
        worker=False,
        log_level="WARNING",
        admin_key=ADMIN,
        catalog_ann_threshold=threshold,
        _env_file=None,  # type: ignore[call-arg]
    )


def load(ctx: AppContext, n: int, vecs: np.ndarray) -> dict[str, Any]:
    """Records and vectors through the services; seconds each."""
    service.create_collection(ctx, CollectionCreate(name=COLLECTION))
    start = time.perf_counter()
    report = ingest.ingest(ctx, COLLECTION, ingest.jsonl_rows(jsonl(n)))
    records_s = time.perf_counter() - start
    assert report.created == n, report
    start = time.perf_counter()
    for lo in range(0, n, 5000):
        items = [(f"r{i}", {"vector": vecs[i].tolist()}) for i in range(lo, min(n, lo + 5000))]
        binding.put_inferences(ctx, COLLECTION, "embed", "1", items)
    vectors_s = time.perf_counter() - start
    total = records_s + vectors_s
    return {
        "records_s": round(records_s, 2),
        "vectors_s": round(vectors_s, 2),
        "total_s": round(total, 2),
        "records_per_s": round(n / total),
    }


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return round(time.perf_counter() - start, 3)


def embedded(folder: Path, n: int, vecs: np.ndarray, queries: np.ndarray, ref: Reference) -> dict[str, Any]:
    truth = [set(ref.top(q, False)) for q in queries]
    truth_f = [set(ref.top(q, True)) for q in queries]
    ctx = build_context(settings_for(folder, threshold=10**9))  # exact only
    out: dict[str, Any] = {"ingest": load(ctx, n, vecs)}
    out["index_build_s"] = timed(lambda: via_service(ctx, False)(queries[0]))
    out["columns_load_s"] = timed(lambda: via_service(ctx, True)(queries[0]))
    out["exact_unfiltered"] = measure(queries, via_service(ctx, False), truth)
    out["exact_filtered"] = measure(queries, via_service(ctx, True), truth_f)
    out["exact_filtered_uncached"] = measure(queries, via_service(ctx, True, cold=True), truth_f)
    out["hybrid_text_vector"] = hybrid(ctx, queries)
    ctx.close()
    ctx = build_context(settings_for(folder, threshold=1))  # the same data dir, with an ANN index
    out["ann_build_s"] = timed(lambda: ann_ready(ctx, queries[0]))
    out["ann_unfiltered"] = measure(queries, via_service(ctx, False), truth)
    out["ann_filtered"] = measure(queries, via_service(ctx, True), truth_f)
    ctx.close()
    ctx = build_context(settings_for(folder, threshold=1))  # a new process finds the saved graph
    out["ann_load_s"] = timed(lambda: ann_ready(ctx, queries[0]))
    out["http_exact_unfiltered"] = over_http(settings_for(folder, threshold=10**9), queries, truth)
    ctx.close()
    out.update(served(folder, queries, truth, truth_f))
    ctx = build_context(settings_for(folder, threshold=10**9))  # last: the rows above measure version 1 alone
    out["switch_under_load"] = switch_under_load(ctx, n, vecs, queries)
    ctx.close()
    return out


def switch_under_load(ctx: AppContext, n: int, vecs: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Version 2 of every vector stored (other data), then made current while two threads query
    (unfiltered and filtered; on pgvector the switch first copies version 2 in and builds its index, while
    the queries go on at version 1): every result must rank by one version's vectors alone, the ones
    before the switch by version 1 and the ones after it by version 2. Then version 1 again (the issue's
    rollback)."""
    from modelyard.catalog import versions
    from modelyard.catalog.schemas import VersionSwitch

    new = data(n, seed=7)
    start = time.perf_counter()
    for lo in range(0, n, 5000):
        items = [(f"r{i}", {"vector": new[i].tolist()}) for i in range(lo, min(n, lo + 5000))]
        binding.put_inferences(ctx, COLLECTION, "embed", "2", items)
    store_s = time.perf_counter() - start
    units = {v: m / np.linalg.norm(m, axis=1, keepdims=True) for v, m in (("1", vecs), ("2", new))}
    seen: list[tuple[float, float, set[str]]] = []  # (started, took, the versions the result agrees with)
    stop, enough = threading.Event(), threading.Event()
    want = 50  # results before the switch, then as many after it

    def agrees(q: np.ndarray, hits: list[tuple[int, float]]) -> set[str]:
        """The versions whose vectors give every hit its distance."""
        qn = q / np.linalg.norm(q)
        pks = [pk for pk, _ in hits]
        got = np.array([d for _, d in hits])
        return {v for v, u in units.items() if np.allclose(1 - u[pks] @ qn, got, atol=1e-4)}

    def load(filtered: bool) -> None:
        for j in range(10**9):
            if stop.is_set():
                return
            q = queries[j % len(queries)]
            vector = {"field": "embed.vector", "vector": q.tolist(), "k": K}
            body = {"vector": vector, "limit": K, "filter": FILTER if filtered else None, "inferred": []}
            t = time.perf_counter()
            result = search.search(ctx, COLLECTION, SearchQuery.model_validate(body))
            took = time.perf_counter() - t
            hits = [(int(h.record.id[1:]), float(h.why.vector_distance or 0.0)) for h in result.hits]
            seen.append((t, took, agrees(q, hits)))
            if len(seen) >= want:
                enough.set()

    threads = [threading.Thread(target=load, args=(f,)) for f in (False, True)]
    for thread in threads:
        thread.start()
    try:
        enough.wait(600)
        t0 = time.perf_counter()
        job = versions.switch(ctx, COLLECTION, VersionSwitch(producer="embed", version="2"))
        switched = time.perf_counter()
        want = len(seen) + 50
        enough.clear()
        enough.wait(600)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    before = [s for s in seen if s[0] + s[1] < t0]
    after = [s for s in seen if s[0] > switched]
    mixed = [s for s in seen if len(s[2]) != 1]
    assert job.state == "succeeded", job
    rollback_s = timed(lambda: versions.rollback(ctx, COLLECTION, "embed"))
    return {
        "store_version_2_s": round(store_s, 2),
        "switch_s": round(switched - t0, 3),
        "rollback_s": rollback_s,
        "results": len(seen),
        "mixed_results": len(mixed),
        "before_all_version_1": all(s[2] == {"1"} for s in before),
        "after_all_version_2": all(s[2] == {"2"} for s in after),
        "results_before_during_after": [len(before), len(seen) - len(before) - len(after), len(after)],
        "query_p50_ms_under_switch": round(statistics.median(s[1] for s in seen) * 1000, 3),
        "query_max_ms_under_switch": round(max(s[1] for s in seen) * 1000, 3),
    }


def ann_ready(ctx: AppContext, q: np.ndarray) -> None:
    """Query until the ANN graph is ready (it builds or loads in the background)."""
    run = via_service(ctx, False)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        run(q)
        if any(i.ann is not None and i.ann.graphs for i in ctx.catalog.get().indexes.values()):
            return
        time.sleep(0.05)
    raise TimeoutError("the ANN graph was not ready in 30 minutes")


def hybrid(ctx: AppContext, queries: np.ndarray) -> dict[str, Any]:
    """Text (two title words) fused with vector kNN by reciprocal rank."""
    times = []
    for j, q in enumerate(queries):
        words = f"{COLOURS[j % len(COLOURS)]} {THINGS[j % len(THINGS)]}"
        vector = {"field": "embed.vector", "vector": q.tolist(), "k": K}
        query = SearchQuery.model_validate({"text": words, "vector": vector, "limit": K, "inferred": []})
        start = time.perf_counter()
        search.search(ctx, COLLECTION, query)
        times.append(time.perf_counter() - start)
    return {"p50_ms": round(statistics.median(times) * 1000, 3), "queries": len(queries)}


def over_http(settings: Settings, queries: np.ndarray, truth: list[set[int]]) -> dict[str, Any]:
    """Unfiltered exact kNN through a real HTTP server (uvicorn, loopback) with one keep-alive client."""
    import httpx
    import uvicorn
    from tests.s3server import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300
        ) as client:

            def run(q: np.ndarray) -> list[int]:
                body = {"vector": {"field": "embed.vector", "vector": q.tolist(), "k": K}, "inferred": []}
                resp = client.post(f"/api/v1/collections/{COLLECTION}/search", json={**body, "limit": K})
                resp.raise_for_status()
                return [int(h["record"]["id"][1:]) for h in resp.json()["hits"]]

            return measure(queries, run, truth)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def served(
    folder: Path, queries: np.ndarray, truth: list[set[int]], truth_f: list[set[int]]
) -> dict[str, Any]:
    """The default vector query over HTTP from ``modelyard serve`` as ``make run`` starts it (its worker on,
    default settings and logging, the ANN graph from its threshold on) on the same data dir: what a user
    gets. The graph saved by the rows before loads on the first query; other queries run first."""
    import httpx
    from tests.e2e.serve import modelyard_serve

    env = {**os.environ, "MODELYARD_DATA_DIR": str(folder), "MODELYARD_ADMIN_KEY": ADMIN}
    env.pop("MODELYARD_DATABASE_URL", None)
    with (
        modelyard_serve(env, folder.parent / "serve.log", cwd=folder) as (url, _),
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300) as client,
    ):

        def run(q: np.ndarray, filtered: bool) -> list[int]:
            vector = {"field": "embed.vector", "vector": q.tolist(), "k": K}
            body = {"vector": vector, "limit": K, "filter": FILTER if filtered else None, "inferred": []}
            resp = client.post(f"/api/v1/collections/{COLLECTION}/search", json=body)
            resp.raise_for_status()
            return [int(h["record"]["id"][1:]) for h in resp.json()["hits"]]

        for q in queries_near(queries, 200, seed=3):  # the graph loads, caches fill
            run(q, False)
            run(q, True)
        return {
            "served_http_unfiltered": measure(queries, lambda q: run(q, False), truth),
            "served_http_filtered": measure(queries, lambda q: run(q, True), truth_f),
        }


def pgvector(n: int, vecs: np.ndarray, queries: np.ndarray, ref: Reference) -> dict[str, Any]:
    """Measured in steady state: shared buffers that hold the table and its HNSW index (pgvector's advice;
    PostgreSQL's default 128 MB holds neither of 100,000 x 384 floats), read in by other queries first."""
    from tests.pgvector_server import database, running

    truth = [set(ref.top(q, False)) for q in queries]
    truth_f = [set(ref.top(q, True)) for q in queries]
    warm = queries_near(vecs, PG_WARM_QUERIES, seed=2)
    with running(PG_SETTINGS) as server, database(server) as url, tempfile.TemporaryDirectory() as tmp:
        ctx = build_context(settings_for(Path(tmp), threshold=10**9, database_url=url))
        out: dict[str, Any] = {"ingest": load(ctx, n, vecs), "settings": PG_SETTINGS}
        out["copy_and_index_s"] = timed(lambda: via_service(ctx, False)(queries[0]))
        out["warm_s"] = timed(lambda: [via_service(ctx, f)(q) for q in warm for f in (False, True)])
        out["unfiltered"] = measure(queries, via_service(ctx, False), truth)
        out["filtered"] = measure(queries, via_service(ctx, True), truth_f)
        out["exact_unfiltered"] = measure(queries[:20], via_service(ctx, False, exact=True), truth[:20])
        out["hybrid_text_vector"] = hybrid(ctx, queries)
        out["switch_under_load"] = switch_under_load(ctx, n, vecs, queries)
        ctx.close()
    return out


def libraries(vecs: np.ndarray, queries: np.ndarray, ref: Reference, skip: set[str]) -> dict[str, Any]:
    """The same queries on each library directly."""
    truth = [set(ref.top(q, False)) for q in queries]
    truth_f = [set(ref.top(q, True)) for q in queries]
    ids, mask = np.arange(len(vecs)), np.arange(len(vecs)) % 10 == 3
    out: dict[str, Any] = {
        "numpy_unfiltered": measure(queries, lambda q: ref.top(q, False), truth),
        "numpy_filtered": measure(queries, lambda q: ref.top(q, True), truth_f),
    }
    if "usearch" not in skip:
        from usearch.index import Index

        index = Index(ndim=DIM, metric="cos", dtype="f32", connectivity=16, expansion_add=128)
        out["usearch_build_s"] = timed(lambda: index.add(ids, vecs, threads=2))
        index.expansion_search = 64

        def overfetch(q: np.ndarray) -> list[int]:
            keys = np.asarray(index.search(q, K * 10, threads=1).keys)
            return keys[mask[keys]][:K].tolist()  # type: ignore[no-any-return]

        out["usearch_unfiltered"] = measure(queries, lambda q: index.search(q, K).keys.tolist(), truth)
        out["usearch_filtered_overfetch"] = measure(queries, overfetch, truth_f)
        del index
    if "hnswlib" not in skip:
        import hnswlib

        h = hnswlib.Index(space="cosine", dim=DIM)
        h.init_index(max_elements=len(vecs), M=16, ef_construction=128)
        h.set_num_threads(2)
        out["hnswlib_build_s"] = timed(lambda: h.add_items(vecs, ids))
        h.set_num_threads(1)
        h.set_ef(64)
        out["hnswlib_unfiltered"] = measure(queries, lambda q: h.knn_query(q, k=K)[0][0].tolist(), truth)
        out["hnswlib_filtered"] = measure(
            queries, lambda q: h.knn_query(q, k=K, filter=lambda i: i % 10 == 3)[0][0].tolist(), truth_f
        )
        del h
    if "sqlite-vec" not in skip:
        out.update(sqlite_vec(vecs, queries, truth, truth_f))
    return out


def sqlite_vec(
    vecs: np.ndarray, queries: np.ndarray, truth: list[set[int]], truth_f: list[set[int]]
) -> dict[str, Any]:
    import sqlite_vec as sv

    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        return {"sqlite_vec": "not measured: this Python's sqlite3 was built without loadable extensions"}
    conn.enable_load_extension(True)
    sv.load(conn)
    conn.execute(
        f"CREATE VIRTUAL TABLE v USING vec0(bucket integer, embedding float[{DIM}] distance_metric=cosine)"
    )
    start = time.perf_counter()
    conn.executemany(
        "INSERT INTO v (rowid, bucket, embedding) VALUES (?, ?, ?)",
        ((i, i % 10, vecs[i].tobytes()) for i in range(len(vecs))),
    )
    build = round(time.perf_counter() - start, 3)

    def run(q: np.ndarray, filtered: bool) -> list[int]:
        where = " AND bucket = 3" if filtered else ""
        sql = f"SELECT rowid FROM v WHERE embedding MATCH ? AND k = {K}{where} ORDER BY distance"
        return [r[0] for r in conn.execute(sql, (q.astype(np.float32).tobytes(),))]

    return {
        "sqlite_vec_insert_s": build,
        "sqlite_vec_unfiltered": measure(queries, lambda q: run(q, False), truth),
        "sqlite_vec_filtered": measure(queries, lambda q: run(q, True), truth_f),
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"catalog: {r['records']:,} records x {DIM}-dim float32, k={K}, cosine; 'filtered' keeps 10%",
        f"{'backend / query':<44}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}   goal",
    ]
    goals = {
        "embedded.exact_unfiltered": "p50 <= 10 ms, recall 1.0",
        "embedded.exact_filtered": "p50 <= 8 ms, recall 1.0",
        "embedded.exact_filtered_uncached": "p50 <= 8 ms, recall 1.0",
        "embedded.ann_unfiltered": "recall >= 0.99 at p50 <= 1 ms",
        "embedded.ann_filtered": "recall >= 0.98 at p50 <= 2 ms",
        "pgvector.unfiltered": "recall >= 0.99 at p50 <= 1 ms",
        "pgvector.filtered": "recall >= 0.98 at p50 <= 2 ms",
    }
    for part in ("embedded", "pgvector", "libraries"):
        for name, row in r.get(part, {}).items():
            if isinstance(row, dict) and "recall_at_10" in row:
                key = f"{part}.{name}"
                lines.append(
                    f"{key:<44}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['recall_at_10']:>11.3f}"
                    f"   {goals.get(key, '')}"
                )
    for part in ("embedded", "pgvector"):
        got = r.get(part, {})
        if "ingest" in got:
            i = got["ingest"]
            lines.append(
                f"{part}.ingest: {i['total_s']} s (records {i['records_s']} s + vectors {i['vectors_s']} s;"
                f" {i['records_per_s']:,} records/s)   goal <= 60 s"
            )
        if "switch_under_load" in got:
            w = got["switch_under_load"]
            lines.append(
                f"{part}.switch under load: {w['switch_s']} s, {w['mixed_results']} of {w['results']} results"
                f" mixed versions (before/during/after {w['results_before_during_after']}), query p50"
                f" {w['query_p50_ms_under_switch']} ms   goal: atomic, none mixed"
            )
        if "hybrid_text_vector" in got:
            lines.append(
                f"{part}.hybrid text+vector p50: {got['hybrid_text_vector']['p50_ms']} ms   goal <= 20 ms"
            )
    e, p, lib = r.get("embedded", {}), r.get("pgvector", {}), r.get("libraries", {})
    builds = {
        "embedded index (first query)": e.get("index_build_s"),
        "embedded filter columns (first filter)": e.get("columns_load_s"),
        "embedded ANN build (background)": e.get("ann_build_s"),
        "embedded ANN load (new process)": e.get("ann_load_s"),
        "pgvector copy + HNSW build": p.get("copy_and_index_s"),
        "usearch build (direct)": lib.get("usearch_build_s"),
        "hnswlib build (direct)": lib.get("hnswlib_build_s"),
        "sqlite-vec insert": lib.get("sqlite_vec_insert_s"),
    }
    lines += [f"{name}: {secs} s" for name, secs in builds.items() if secs is not None]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--records", type=int, help="records (default 100,000; quick 5,000)")
    parser.add_argument("--queries", type=int, help="queries per kind (default 200; quick 30)")
    parser.add_argument("--skip", default="", help="comma-separated: pgvector, usearch, hnswlib, sqlite-vec")
    parser.add_argument(
        "--only", default="", help="comma-separated parts to run: embedded, pgvector, libraries"
    )
    parser.add_argument("--out", type=Path, help="write the JSON here instead")
    args = parser.parse_args()
    n = args.records or (5000 if args.quick else 100_000)
    nq = args.queries or (30 if args.quick else 200)
    skip = set(filter(None, args.skip.split(",")))
    only = set(filter(None, args.only.split(","))) or PARTS
    warnings.simplefilter("ignore")
    vecs = data(n)
    queries = queries_near(vecs, nq, seed=1)
    ref = Reference(vecs)
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "quick": args.quick,
        "records": n,
    }
    parts = "" if only == PARTS else "-" + "-".join(sorted(only))  # a partial run keeps its own file
    name = "catalog" + "-quick" * args.quick + parts
    out = args.out or BENCH / "results" / f"{name}.json"

    def save() -> None:  # after each part, so a long run interrupted still leaves what it measured
        out.write_text(json.dumps(results, indent=2) + "\n")

    if "embedded" in only:
        with tempfile.TemporaryDirectory(prefix="modelyard-bench-catalog-") as tmp:
            results["embedded"] = embedded(Path(tmp), n, vecs, queries, ref)
        save()
    if "pgvector" in only and "pgvector" not in skip:
        results["pgvector"] = pgvector(n, vecs, queries, ref)
        save()
    if "libraries" in only:
        results["libraries"] = libraries(vecs, queries, ref, skip)
    results["load_average_at_end"] = os.getloadavg()
    save()
    print(table(results))
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
