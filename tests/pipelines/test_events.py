"""Listing a pipeline's events a page at a time with keyset cursors, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from modelyard.pipelines.models import Event
from tests.pipelines.test_api import apply

EVENTS = "/api/v1/pipelines/looks/events"


def _submit(api: Any, names: list[str]) -> None:
    body = {"events": [{"name": n, "source": f"in/{n}.png"} for n in names]}
    resp = api.post(EVENTS, json=body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["created"] == len(names)


def _page(api: Any, **params: Any) -> dict[str, Any]:
    resp = api.get(EVENTS, params={"limit": 7, **params})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_paging_older_then_newer_sees_every_event_once_while_events_are_added(api: Any) -> None:
    apply(api)
    first = [f"a{i:02d}" for i in range(30)]
    _submit(api, first[:15])  # one submission: its events may share a created_at, the id breaks ties
    _submit(api, first[15:])
    everything = [e["name"] for e in _page(api, limit=1000)["items"]]
    assert sorted(everything) == first
    page = _page(api)
    assert page["total"] == 30 and page["newer"] is None
    walked = [e["name"] for e in page["items"]]
    added: list[str] = []
    while page["older"]:
        batch = [f"b{len(added) + i:02d}" for i in range(3)]
        _submit(api, batch)  # newer than every page still to come: they must not shift it
        added += batch
        page = _page(api, before=page["older"])
        walked += [e["name"] for e in page["items"]]
    assert walked == everything  # in the same order, no event twice, none missing
    assert page["older"] is None

    back = [e["name"] for e in page["items"]]
    while page["newer"]:
        page = _page(api, after=page["newer"])
        back = [e["name"] for e in page["items"]] + back
    assert back == [e["name"] for e in _page(api, limit=1000)["items"]]  # up to the newest, added ones too
    assert sorted(back) == sorted(first + added)


def test_a_state_filter_pages_through_only_that_state(api: Any) -> None:
    apply(api)
    names = [f"e{i:02d}" for i in range(20)]
    _submit(api, names)
    failed = set(names[::3])
    with api.ctx.engine.begin() as conn:
        conn.execute(update(Event).where(Event.name.in_(failed)).values(state="failed"))
    page = _page(api, state="failed", count=False)
    assert page["total"] is None
    seen = [e["name"] for e in page["items"]]
    while page["older"]:
        page = _page(api, state="failed", before=page["older"])
        seen += [e["name"] for e in page["items"]]
    assert seen == [e["name"] for e in _page(api, state="failed", limit=1000)["items"]]
    assert sorted(seen) == sorted(failed)


def test_a_cursor_not_from_a_page_is_a_400_naming_it(api: Any) -> None:
    apply(api)
    _submit(api, ["only"])
    alone = _page(api)
    assert [e["name"] for e in alone["items"]] == ["only"]
    assert alone["older"] is None and alone["newer"] is None
    for params, field in (
        ({"before": "not-a-cursor"}, "before"),
        ({"after": "eyJ0IjogMX0"}, "after"),  # valid base64 JSON, but not a position
        ({"before": "eyJ0IjogMX0", "after": "eyJ0IjogMX0"}, "after"),
        ({"offset": 50}, "offset"),  # offset paging is gone: not silently the first page again
    ):
        resp = api.get(EVENTS, params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["code"] == "invalid-query" and resp.json()["field"] == field
