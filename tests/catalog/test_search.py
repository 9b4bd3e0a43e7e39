"""Search: filters, sort with cursors, facets, text, exact kNN (checked against numpy, with and without
filters), colour, hybrid fusion, and the bad inputs each refused with a 400 naming the offending part."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.catalog import binding, service, versions
from modelyard.catalog.ann import AnnConfig
from modelyard.catalog.pgvector import PgVector
from modelyard.pipelines import service as pipelines
from tests.catalog.conftest import WITH_PGVECTOR, make_collection
from tests.catalog.test_binding import images, settle
from tests.conftest import ADMIN_KEY

C = "/api/v1/collections/works"
N, DIM = 240, 16
WORDS = ["oil painting of a harbour", "watercolour river", "portrait in oil", "charcoal sketch of boats"]


def vectors(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, DIM)).astype(np.float32) * 3
    return (centres[rng.integers(0, 6, N)] + rng.normal(size=(N, DIM))).astype(np.float32)


@pytest.fixture
def works(api: Any) -> np.ndarray:
    """N records: year, kind, a flag on some, text from WORDS, and an ``embed.vector`` inference each."""
    make_collection(api)
    lines = []
    for i in range(N):
        attrs: dict[str, Any] = {"year": 1800 + (i * 7) % 120, "kind": ["oil", "ink", "print"][i % 3]}
        if i % 4 == 0:
            attrs["framed"] = i % 8 == 0
        lines.append(
            {"id": f"w{i:03d}", "title": WORDS[i % 4], "description": f"item {i}", "attributes": attrs}
        )
    body = "\n".join(json.dumps(x) for x in lines).encode()
    assert api.post(f"{C}/records:bulk", content=body, params={"format": "jsonl"}).json()["created"] == N
    vecs = vectors()
    items = [(f"w{i:03d}", {"vector": vecs[i].tolist(), "label": "a" if i % 2 else "b"}) for i in range(N)]
    assert binding.put_inferences(api.ctx, "works", "embed", "1", items) == N
    return vecs


def find(api: Any, **query: Any) -> Any:
    resp = api.post(f"{C}/search", json=query)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ids(result: Any) -> list[str]:
    return [h["record"]["id"] for h in result["hits"]]


def attrs(i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"year": 1800 + (i * 7) % 120, "kind": ["oil", "ink", "print"][i % 3]}
    if i % 4 == 0:
        out["framed"] = i % 8 == 0
    return out


def test_filters_on_attributes_and_inferred_fields_with_and_or(api: Any, works: np.ndarray) -> None:
    query = {
        "or": [
            {
                "and": [
                    {"field": "attributes.year", "op": "gte", "value": 1850},
                    {"field": "attributes.year", "op": "lt", "value": 1900},
                    {"field": "attributes.kind", "op": "in", "value": ["oil", "ink"]},
                ]
            },
            {"and": [{"field": "attributes.framed", "op": "exists"}, {"field": "embed.label", "value": "b"}]},
        ]
    }

    def passes(i: int) -> bool:
        a = attrs(i)
        first = 1850 <= a["year"] < 1900 and a["kind"] in ("oil", "ink")
        return first or ("framed" in a and i % 2 == 0)

    got = find(api, filter=query, limit=1000)
    assert ids(got) == [f"w{i:03d}" for i in range(N) if passes(i)]
    assert got["total"] == sum(passes(i) for i in range(N))
    none = find(api, filter={"field": "attributes.framed", "op": "exists", "value": False}, limit=1000)
    assert none["total"] == N - N // 4
    ne = find(api, filter={"field": "attributes.kind", "op": "ne", "value": "oil"}, limit=1000)
    assert ne["total"] == N - N // 3


def test_sorted_pages_follow_cursors_in_order_with_nulls_last(api: Any, works: np.ndarray) -> None:
    expected = sorted(range(N), key=lambda i: (-attrs(i)["year"], i))
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"sort": {"field": "attributes.year", "order": "desc"}, "limit": 37}
        got = find(api, **query, **({"cursor": cursor} if cursor else {}))
        seen += ids(got)
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"w{i:03d}" for i in expected]
    framed = []
    cursor = None
    while True:
        got = find(
            api, sort={"field": "attributes.framed"}, limit=50, **({"cursor": cursor} if cursor else {})
        )
        framed += ids(got)
        cursor = got["next_cursor"]
        if cursor is None:
            break
    order = sorted(range(N), key=lambda i: ("framed" not in attrs(i), attrs(i).get("framed", False), i))
    assert framed == [f"w{i:03d}" for i in order]


def test_facets_count_values_of_the_filtered_records(api: Any, works: np.ndarray) -> None:
    got = find(
        api, filter={"field": "embed.label", "value": "a"}, facets=["attributes.kind", "attributes.framed"]
    )
    odd = [i for i in range(N) if i % 2]
    assert got["facets"]["attributes.kind"] == {
        k: sum(1 for i in odd if attrs(i)["kind"] == k) for k in ("oil", "ink", "print")
    }
    assert got["facets"]["attributes.framed"] == {}  # framed records all have even ids


def test_text_search_ranks_stemmed_words_and_respects_the_filter(api: Any, works: np.ndarray) -> None:
    got = find(api, text="oil paintings", limit=1000)
    assert set(ids(got)) == {f"w{i:03d}" for i in range(N) if i % 4 == 0}
    assert got["hits"][0]["why"]["text_rank"] == 1 and got["hits"][0]["why"]["text_score"] is not None
    filtered = find(api, text="oil", filter={"field": "attributes.kind", "value": "ink"}, limit=1000)
    assert set(ids(filtered)) == {f"w{i:03d}" for i in range(N) if i % 4 in (0, 2) and i % 3 == 1}
    assert find(api, text="nothing-like-this")["total"] == 0


def brute(vecs: np.ndarray, q: np.ndarray, metric: str, rows: list[int], k: int) -> list[int]:
    sub = vecs[rows]
    if metric == "cosine":
        d = 1 - (sub / np.linalg.norm(sub, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif metric == "dot":
        d = -(sub @ q)
    else:
        d = np.linalg.norm(sub - q, axis=1)
    return [rows[i] for i in np.lexsort((rows, d))[:k]]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_knn_by_vector_is_exact_unfiltered_and_filtered(api: Any, works: np.ndarray, metric: str) -> None:
    q = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    got = find(
        api, vector={"field": "embed.vector", "vector": q.tolist(), "k": 10, "metric": metric}, limit=10
    )
    assert ids(got) == [f"w{i:03d}" for i in brute(works, q, metric, list(range(N)), 10)]
    rows = [i for i in range(N) if i % 10 == 3]  # a filter that keeps 10%
    query = {"field": "embed.vector", "vector": q.tolist(), "k": 10, "metric": metric}
    filt = {"field": "attributes.year", "op": "in", "value": sorted({attrs(i)["year"] for i in rows})}
    allowed = [i for i in range(N) if attrs(i)["year"] in filt["value"]]
    got = find(api, vector=query, filter=filt, limit=10)
    assert ids(got) == [f"w{i:03d}" for i in brute(works, q, metric, allowed, 10)]
    assert len(ids(got)) == 10
    dist = [h["why"]["vector_distance"] for h in got["hits"]]
    assert dist == sorted(dist)


@WITH_PGVECTOR
def test_knn_returns_k_when_exactly_k_pass_and_all_when_fewer(api: Any, works: np.ndarray) -> None:
    q = works[0].tolist()
    five = {"field": "id", "op": "in", "value": [f"w{i:03d}" for i in (5, 50, 100, 150, 200)]}
    got = find(api, vector={"field": "embed.vector", "vector": q, "k": 5}, filter=five)
    assert sorted(ids(got)) == sorted(five["value"])
    got = find(api, vector={"field": "embed.vector", "vector": q, "k": 10}, filter=five)
    assert got["total"] == 5


@WITH_PGVECTOR
def test_more_like_this_excludes_the_record_itself(api: Any, works: np.ndarray) -> None:
    got = find(api, vector={"field": "embed.vector", "record": "w010", "k": 5})
    rows = [i for i in range(N) if i != 10]
    assert ids(got) == [f"w{i:03d}" for i in brute(works, works[10], "cosine", rows, 5)]


@WITH_PGVECTOR
def test_the_vector_index_sees_new_changed_and_deleted_records(api: Any, works: np.ndarray) -> None:
    q = np.full(DIM, 50.0, dtype=np.float32)
    query = {"vector": {"field": "embed.vector", "vector": q.tolist(), "k": 1, "metric": "l2"}}
    before = ids(find(api, **query))
    api.post(f"{C}/records", json={"id": "new"})
    binding.put_inferences(api.ctx, "works", "embed", "1", [("new", {"vector": q.tolist()})])
    assert ids(find(api, **query)) == ["new"]
    binding.put_inferences(api.ctx, "works", "embed", "1", [("new", {"vector": (-q).tolist()})])
    assert ids(find(api, **query)) == before
    binding.put_inferences(api.ctx, "works", "embed", "1", [("new", {"vector": q.tolist()})])
    api.delete(f"{C}/records/new")
    assert ids(find(api, **query)) == before


def test_a_vector_search_finds_the_databases_vector_capability_once(api: Any, works: np.ndarray) -> None:
    capabilities = api.ctx.db.capabilities
    assert capabilities.vector is None  # nothing probed before the first vector search
    query = {"vector": {"field": "embed.vector", "vector": works[3].tolist(), "k": 3}}
    assert ids(find(api, **query))[0] == "w003"
    found = capabilities.vector
    assert isinstance(found, PgVector)
    if api.ctx.db.embedded:
        assert found == PgVector(available=False)
    assert ids(find(api, **query))[0] == "w003"
    assert capabilities.vector is found


@WITH_PGVECTOR
def test_hybrid_fuses_text_and_vector_ranks_and_says_why(api: Any, works: np.ndarray) -> None:
    query = {
        "text": "harbour",
        "vector": {"field": "embed.vector", "record": "w004", "k": 20},
        "weights": {"text": 1.0, "vector": 2.0},
        "limit": 5,
    }
    got = find(api, **query)
    top = got["hits"][0]
    assert top["why"]["text_rank"] is not None and top["why"]["vector_rank"] is not None
    fused = [h["why"]["fused"] for h in got["hits"]]
    assert fused == sorted(fused, reverse=True)
    page2 = find(api, **query, cursor=got["next_cursor"])
    assert not set(ids(page2)) & set(ids(got))


@WITH_PGVECTOR
def test_colour_search_finds_near_colours_first(api: Any) -> None:
    pipelines.apply(
        api.ctx,
        yaml.safe_load("name: looks\nraw: image\nstages:\n  palette: {type: inferrer, inferrer: palette}\n"),
    )
    make_collection(api, pipelines=["looks"])
    made = images(
        api, {"blue": (20, 30, 220), "crimson": (170, 15, 50), "red": (230, 10, 10), "green": (0, 200, 0)}
    )
    for name, (path, digest) in made.items():
        api.post(f"{C}/records", json={"id": name, "source": path, "content_hash": digest})
    settle(api)
    got = find(api, colour={"colours": {"#ff0000": 1.0}, "k": 4})
    assert ids(got)[:2] == ["red", "crimson"]
    assert got["hits"][0]["why"]["colour_score"] > got["hits"][1]["why"]["colour_score"]
    mixed = find(api, colour={"colours": {"#00c800": 1.0, "#1e1edc": 0.5}, "k": 2})
    assert ids(mixed) == ["green", "blue"]
    bad = api.post(f"{C}/search", json={"colour": {"colours": {"reddish": 1.0}}})
    assert bad.status_code == 400 and bad.json()["field"] == "colour.colours.reddish"
    assert "unknown colour" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"filter": {"field": "attributes.colour", "value": "x"}}, "filter.field", "unknown field"),
        ({"filter": {"field": "attributes.year", "value": "1900"}}, "filter.value", "number"),
        (
            {"filter": {"and": [{"field": "attributes.year", "op": "in", "value": [1, True]}]}},
            "filter.and[0].value",
            "number",
        ),
        ({"filter": {"field": "attributes.framed", "op": "gt", "value": True}}, "filter.op", "ranges"),
        ({"filter": {"field": "embed.vector", "value": 1}}, "filter.op", "only exists"),
        ({"vector": {"field": "embed.vector", "vector": [1.0, 2.0]}}, "vector.vector", "dimensions"),
        ({"vector": {"field": "embed.vector", "record": "w001", "k": 5000}}, "vector.k", "cap is 1000"),
        ({"vector": {"field": "attributes.year", "record": "w001"}}, "vector.field", "not vectors"),
        ({"vector": {"field": "embed.vector"}}, "vector", "either"),
        ({"cursor": "%%%"}, "cursor", "malformed"),
        ({"text": "oil", "sort": {"field": "attributes.year"}}, "sort", "sort applies"),
        ({"facets": ["embed.vector"]}, "facets[0]", "scalar"),
        ({"colour": {"colours": {"reddish": 1.0}}}, "colour.field", "palette"),
    ],
)
def test_bad_queries_are_400_naming_the_part_and_the_rule(
    api: Any, works: np.ndarray, query: dict[str, Any], field: str, words: str
) -> None:
    resp = api.post(f"{C}/search", json=query)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "invalid-query" and body["field"] == field and words in body["detail"]


def test_a_cursor_of_another_query_or_an_unknown_colour_is_refused(api: Any, works: np.ndarray) -> None:
    page = find(api, filter={"field": "attributes.kind", "value": "oil"}, limit=5)
    resp = api.post(
        f"{C}/search",
        json={"filter": {"field": "attributes.kind", "value": "ink"}, "cursor": page["next_cursor"]},
    )
    assert resp.status_code == 400 and resp.json()["field"] == "cursor"
    from modelyard.catalog.colours import query_vector
    from modelyard.errors import InvalidQuery

    with pytest.raises(InvalidQuery) as info:
        query_vector({"not-a-colour": 1.0}, 10)
    assert info.value.field == "colour.colours.not-a-colour"


def test_k_over_the_cap_is_refused_by_the_schema_or_the_rule(api: Any, works: np.ndarray) -> None:
    resp = api.post(f"{C}/search", json={"vector": {"field": "embed.vector", "record": "w001", "k": 0}})
    assert resp.status_code == 422 and resp.json()["field"].endswith("k")


@WITH_PGVECTOR
def test_a_filtered_search_sees_records_written_since_the_same_filter_last_ran(
    api: Any, works: np.ndarray
) -> None:
    q = np.full(DIM, 50.0, dtype=np.float32).tolist()
    query = {
        "vector": {"field": "embed.vector", "vector": q, "k": 1, "metric": "l2"},
        "filter": {"field": "attributes.kind", "value": "oil"},
    }
    before = ids(find(api, **query))
    api.post(f"{C}/records", json={"id": "new", "attributes": {"kind": "oil"}})
    binding.put_inferences(api.ctx, "works", "embed", "1", [("new", {"vector": q})])
    assert ids(find(api, **query)) == ["new"]
    api.patch(f"{C}/records/new", json={"attributes": {"kind": "ink"}})
    assert ids(find(api, **query)) == before


@WITH_PGVECTOR
def test_a_search_follows_a_version_switch_a_rollback_and_a_record_update_at_once(
    api: Any, works: np.ndarray
) -> None:
    q = np.full(DIM, 50.0, dtype=np.float32).tolist()
    query = {"vector": {"field": "embed.vector", "vector": q, "k": 1, "metric": "l2"}, "inferred": ["embed"]}
    nearest = ids(find(api, **query))[0]  # every cache of version 1 warm from here on
    moved = "w007" if nearest != "w007" else "w008"
    v2 = [(f"w{i:03d}", {"vector": works[i].tolist(), "label": "c"}) for i in range(N)]
    v2[int(moved[1:])] = (moved, {"vector": q, "label": "c"})
    binding.put_inferences(api.ctx, "works", "embed", "2", v2)
    assert ids(find(api, **query)) == [nearest]  # stored, not current: searches keep version 1
    with api.ctx.uow() as session:
        versions.make_current(session, service.collection_state(session, "works").id, "embed", "2")
    hit = find(api, **query)["hits"][0]
    assert hit["record"]["id"] == moved and hit["record"]["inferred"]["embed"]["label"] == "c"
    assert api.patch(f"{C}/records/{moved}", json={"title": "renamed"}).status_code == 200
    assert find(api, **query)["hits"][0]["record"]["title"] == "renamed"
    assert api.post(f"{C}/versions/embed/rollback").status_code == 200
    hit = find(api, **query)["hits"][0]
    assert hit["record"]["id"] == nearest and hit["record"]["inferred"]["embed"]["label"] in ("a", "b")


def test_a_switch_evicts_ann_graphs_older_than_the_previous_version_and_rollback_still_works(
    api: Any, works: np.ndarray, tmp_path: Any
) -> None:
    folder = tmp_path / "catalog-ann"
    q = works[3].tolist()
    query = {"vector": {"field": "embed.vector", "vector": q, "k": 5}, "inferred": []}

    def saved() -> list[str]:
        return sorted(json.loads(p.read_text()).get("version", "?") for p in folder.glob("*.json"))

    def kept(client: Any) -> list[str]:
        return sorted(key[3] for key in client.ctx.catalog.get().indexes)

    other = create_app(api.ctx.settings)  # another API process on the same database and data dir
    with TestClient(other, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as second:
        second.ctx = other.state.ctx  # type: ignore[attr-defined]
        for client in (api, second):
            client.ctx.catalog.get().ann = AnnConfig(folder, threshold=N // 2, background=False)
        answers = {"1": ids(find(api, **query))}
        assert saved() == ["1"]  # the graph answered, and was saved
        legacy = [folder / f"{'a' * 24}-cosine.hnsw", folder / f"{'a' * 24}-cosine.json"]
        for old in legacy:  # a graph of a version named the way files were before (hash of it all)
            old.write_text("{}")
        assert ids(find(second, **query)) == answers["1"] and kept(second) == ["1"]
        for version, seed in (("2", 8), ("3", 9)):
            items = [(f"w{i:03d}", {"vector": v.tolist()}) for i, v in enumerate(vectors(seed))]
            binding.put_inferences(api.ctx, "works", "embed", version, items)
            switched = api.post(f"{C}/versions", json={"producer": "embed", "version": version})
            assert switched.status_code == 202 and switched.json()["state"] == "succeeded", switched.text
            answers[version] = ids(find(api, **query))
        assert saved() == ["2", "3"] and kept(api) == ["2", "3"]  # version 1's graph and index are gone
        assert not any(old.exists() for old in legacy)
        assert ids(find(second, **query)) == answers["3"] and kept(second) == ["3"]  # it let 1 go too
    assert api.post(f"{C}/versions/embed/rollback").status_code == 200
    assert ids(find(api, **query)) == answers["2"] != answers["3"]
    assert saved() == ["2", "3"]  # 3 is now the previous version: kept for a rollback
    assert api.delete(C).status_code == 204
    assert saved() == [] and kept(api) == []


def test_another_process_on_the_database_never_serves_a_stale_version_after_a_switch_or_rollback(
    api: Any, works: np.ndarray
) -> None:
    far = np.full(DIM, 50.0, dtype=np.float32).tolist()
    query = {
        "vector": {"field": "embed.vector", "vector": far, "k": 1, "metric": "l2"},
        "inferred": ["embed"],
    }
    other = create_app(api.ctx.settings)
    with TestClient(other, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as second:
        before = find(second, **query)["hits"][0]["record"]  # every cache of version 1 warm there
        moved = "w007" if before["id"] != "w007" else "w008"
        v2 = [
            (f"w{i:03d}", {"vector": (far if f"w{i:03d}" == moved else works[i].tolist())}) for i in range(N)
        ]
        binding.put_inferences(api.ctx, "works", "embed", "2", v2)
        assert find(second, **query)["hits"][0]["record"]["id"] == before["id"]  # stored, not current
        assert api.post(f"{C}/versions", json={"producer": "embed", "version": "2"}).status_code == 202
        hit = find(second, **query)["hits"][0]["record"]
        assert hit["id"] == moved and hit["inferred"]["embed"]["vector"] == far
        assert api.post(f"{C}/versions/embed/rollback").status_code == 200
        assert find(second, **query)["hits"][0]["record"] == before


@WITH_PGVECTOR
def test_a_new_version_may_embed_in_another_dimension_and_each_version_is_searched_in_its_own(
    api: Any, works: np.ndarray
) -> None:
    wide = np.random.default_rng(4).normal(size=(N, DIM + 8)).astype(np.float32)
    items = [(f"w{i:03d}", {"vector": wide[i].tolist()}) for i in range(N)]
    binding.put_inferences(api.ctx, "works", "embed", "2", items)
    assert api.post(f"{C}/versions", json={"producer": "embed", "version": "2"}).status_code == 202
    like = find(api, vector={"field": "embed.vector", "record": "w010", "k": 5})
    rows = [i for i in range(N) if i != 10]
    assert ids(like) == [f"w{i:03d}" for i in brute(wide, wide[10], "cosine", rows, 5)]
    by_vector = find(api, vector={"field": "embed.vector", "vector": wide[3].tolist(), "k": 1})
    assert ids(by_vector) == ["w003"]
    narrow = {"field": "embed.vector", "vector": works[3].tolist(), "k": 1}
    refused = api.post(f"{C}/search", json={"vector": narrow})
    assert refused.status_code == 400 and refused.json()["field"] == "vector.vector"
    assert f"has {DIM + 8}" in refused.json()["detail"]
    assert ids(find(api, vector={**narrow, "version": "1"})) == ["w003"]  # the old one, in its own
