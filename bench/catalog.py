"""Catalog benchmark: bulk ingest and exact vector kNN through the search service (not HTTP), embedded
default (SQLite + in-process float32 matrix).

N records (100,000 in a full pass) with a ``bucket`` attribute (0-9) and a 384-dim float32 vector each,
drawn as clustered Gaussian data (64 centres) so neighbours are meaningful. Measured:

1. **ingest**: the records through the bulk ingest service (JSONL rows), then their vectors stored as
   inferences; seconds for each and records/s. Goal: <= 60 s together.
2. **index build**: the first query, which reads every vector into the in-memory matrix.
3. **kNN**, k = 10, cosine, Q query vectors (points near the data): p50/p95 unfiltered and with a filter
   that keeps 10% of records (``attributes.bucket == 3``), each with recall@10 against a numpy
   brute-force reference computed in the same run (whose own p50 is printed beside it). The filter's
   record set is cached until the collection's next write; the ``uncached`` row finds it by SQL each time.
   Goals: p50 <= 10 ms unfiltered, <= 8 ms filtered, recall@10 = 1.0.
4. **hybrid**: two title words (FTS5) fused with the vector kNN by reciprocal rank. Goal: p50 <= 20 ms.

Prints a table and writes JSON to ``bench/results/catalog.json`` (``catalog-quick.json`` with --quick).

    .venv/bin/python bench/catalog.py            # full pass (100,000 records; nothing else running)
    .venv/bin/python bench/catalog.py --quick    # smoke run (5,000 records)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "src")]

from modelyard.app import build_context  # noqa: E402
from modelyard.catalog import binding, ingest, search, service  # noqa: E402
from modelyard.catalog.schemas import CollectionCreate, SearchQuery  # noqa: E402
from modelyard.context import AppContext  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

DIM, K, CENTRES = 384, 10, 64
COLLECTION = "bench"
COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "grey", "pink", "olive", "navy"]
THINGS = ["fox", "harbour", "bridge", "portrait", "river", "orchard", "market", "tower", "garden", "boat"]


def title(i: int) -> str:
    """Two words from small vocabularies (about 1% of titles share both words of a query)."""
    return f"{COLOURS[i % len(COLOURS)]} {THINGS[(i // len(COLOURS)) % len(THINGS)]} {i}"


def data(n: int, seed: int = 0) -> np.ndarray:
    """Clustered Gaussian float32 vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
    return centres[rng.integers(0, CENTRES, n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)


def jsonl(n: int) -> Iterator[bytes]:
    for start in range(0, n, 1000):
        lines = (
            json.dumps({"id": f"r{i}", "title": title(i), "attributes": {"bucket": i % 10}})
            for i in range(start, min(n, start + 1000))
        )
        yield ("\n".join(lines) + "\n").encode()


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
    }


def brute(unit: np.ndarray, q: np.ndarray, rows: np.ndarray | None) -> tuple[list[int], float]:
    start = time.perf_counter()
    mat = unit if rows is None else unit[rows]
    d = 1.0 - mat @ (q / np.linalg.norm(q))
    top = np.argpartition(d, K - 1)[:K]
    top = top[np.argsort(d[top], kind="stable")]
    found = (top if rows is None else rows[top]).tolist()
    return found, time.perf_counter() - start


def knn(
    ctx: AppContext, vecs: np.ndarray, queries: np.ndarray, filtered: bool, cold: bool = False
) -> dict[str, Any]:
    """k nearest per query; ``cold``: the filter's record set is found by SQL each time (not cached)."""
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = np.flatnonzero(np.arange(len(vecs)) % 10 == 3) if filtered else None
    filt = {"field": "attributes.bucket", "value": 3} if filtered else None
    times, ref_times, recalls = [], [], []
    for q in queries:
        vector = {"field": "embed.vector", "vector": q.tolist(), "k": K}
        body = {"vector": vector, "limit": K, "filter": filt, "inferred": []}
        query = SearchQuery.model_validate(body)
        if cold:
            ctx.catalog.get().allowed.clear()
        start = time.perf_counter()
        result = search.search(ctx, COLLECTION, query)
        times.append(time.perf_counter() - start)
        got = [int(h.record.id[1:]) for h in result.hits]
        want, took = brute(unit, q, rows)
        ref_times.append(took)
        recalls.append(len(set(got) & set(want)) / K)
    return {
        **ms(times),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "numpy": ms(ref_times),
        "queries": len(queries),
    }


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
    return {**ms(times), "queries": len(queries)}


def run(n: int, q: int, folder: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=folder,
        log_to_file=False,
        worker=False,
        log_level="WARNING",
        _env_file=None,  # type: ignore[call-arg]
    )
    ctx = build_context(settings)
    service.create_collection(ctx, CollectionCreate(name=COLLECTION))
    vecs = data(n)
    start = time.perf_counter()
    report = ingest.ingest(ctx, COLLECTION, ingest.jsonl_rows(jsonl(n)))
    records_s = time.perf_counter() - start
    assert report.created == n, report
    start = time.perf_counter()
    for lo in range(0, n, 5000):
        items = [(f"r{i}", {"vector": vecs[i].tolist()}) for i in range(lo, min(n, lo + 5000))]
        binding.put_inferences(ctx, COLLECTION, "embed", "1", items)
    vectors_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    queries = vecs[rng.integers(0, n, q)] + 0.2 * rng.normal(size=(q, DIM)).astype(np.float32)
    start = time.perf_counter()
    search.search(
        ctx,
        COLLECTION,
        SearchQuery.model_validate({"vector": {"field": "embed.vector", "vector": queries[0].tolist()}}),
    )
    build_s = time.perf_counter() - start
    out = {
        "ingest": {
            "records_s": round(records_s, 2),
            "vectors_s": round(vectors_s, 2),
            "total_s": round(records_s + vectors_s, 2),
            "records_per_s": round(n / (records_s + vectors_s)),
        },
        "index_build_s": round(build_s, 3),
        "knn_unfiltered": knn(ctx, vecs, queries, filtered=False),
        "knn_filtered_10pct": knn(ctx, vecs, queries, filtered=True),
        "knn_filtered_10pct_uncached": knn(ctx, vecs, queries, filtered=True, cold=True),
        "hybrid_text_vector": hybrid(ctx, queries),
    }
    ctx.inference.close()
    ctx.engine.dispose()
    return out


def table(r: dict[str, Any]) -> str:
    i = r["ingest"]
    lines = [
        f"catalog: {r['records']:,} records x {DIM}-dim float32, k={K}, cosine, through the search service",
        f"  ingest            {i['total_s']:>8.2f} s  (records {i['records_s']} s"
        f" + vectors {i['vectors_s']} s; {i['records_per_s']:,} records/s)   goal <= 60 s",
        f"  index build       {r['index_build_s']:>8.3f} s  (first query reads every vector)",
        "  query                       p50 ms   p95 ms  recall@10  numpy p50 ms",
    ]
    runs = (
        ("knn_unfiltered", "<= 10 ms"),
        ("knn_filtered_10pct", "<= 8 ms"),
        ("knn_filtered_10pct_uncached", "<= 8 ms"),
    )
    for name, goal in runs:
        k = r[name]
        lines.append(
            f"  {name:<27} {k['p50_ms']:>7.2f}  {k['p95_ms']:>7.2f}  {k['recall_at_10']:>9.3f}"
            f"  {k['numpy']['p50_ms']:>12.2f}   goal p50 {goal}, recall 1.0"
        )
    h = r["hybrid_text_vector"]
    lines.append(
        f"  hybrid text+vector          {h['p50_ms']:>7.2f}  {h['p95_ms']:>7.2f}{'':>26}goal p50 <= 20 ms"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--records", type=int, help="records (default 100,000; quick 5,000)")
    parser.add_argument("--queries", type=int, help="queries per kind (default 200; quick 30)")
    args = parser.parse_args()
    n = args.records or (5000 if args.quick else 100_000)
    q = args.queries or (30 if args.quick else 200)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-catalog-") as tmp:
        results: dict[str, Any] = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "quick": args.quick,
            "records": n,
            **run(n, q, Path(tmp)),
        }
    print(table(results))
    out = BENCH / "results" / ("catalog-quick.json" if args.quick else "catalog.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
