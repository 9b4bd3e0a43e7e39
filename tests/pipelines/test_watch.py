"""The stage watcher's error report: failures grouped by stage and error type, counted, with the newest
events each hit, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from modelyard.db import utcnow
from modelyard.pipelines.models import Event, StageRun
from modelyard.pipelines.watch import error_report
from tests.pipelines.test_api import apply

START = utcnow() - timedelta(days=1)


def _fail(api: Any, name: str, stage: str, state: str, error_type: str, minutes: int) -> None:
    """Make ``stage`` of event ``name`` end in ``state`` with an error, ``minutes`` after a fixed start."""
    with api.ctx.engine.begin() as conn:
        eid = conn.scalar(select(Event.id).where(Event.name == name))
        conn.execute(
            update(StageRun)
            .where(StageRun.event_id == eid, StageRun.stage == stage)
            .values(
                state=state,
                error_type=error_type,
                error=f"{error_type}: {name} broke",
                finished_at=START + timedelta(minutes=minutes),
            )
        )


def test_errors_are_grouped_by_stage_and_type_with_the_newest_events_they_hit(api: Any) -> None:
    apply(api)
    names = [f"e{i}" for i in range(10)]
    resp = api.post(
        "/api/v1/pipelines/looks/events", json={"events": [{"name": n, "source": "in/a.png"} for n in names]}
    )
    assert resp.status_code == 202, resp.text
    for i in range(5):  # e0..e4 failed in palette, e4 last
        _fail(api, f"e{i}", "palette", "failed", "DecodeError", minutes=i)
    _fail(api, "e5", "palette", "ready", "DecodeError", minutes=10)  # failed once, waits for a retry
    _fail(api, "e6", "aspect", "failed", "ValueError", minutes=3)
    _fail(api, "e7", "aspect", "done", "ValueError", minutes=4)  # failed once, then went well: not counted
    _fail(api, "e8", "size", "skipped", "Skipped", minutes=5)  # never ran: not a failure of its own

    report = error_report(api.ctx, "looks", examples=3)
    got = [(g.stage, g.error_type, g.count, g.events) for g in report.groups]
    assert got == [
        ("palette", "DecodeError", 6, ["e5", "e4", "e3"]),  # most failures first, newest events first
        ("aspect", "ValueError", 1, ["e6"]),
    ]
    palette = report.groups[0]
    assert palette.example == "DecodeError: e5 broke"
    assert palette.last_at is not None
    assert palette.last_at.replace(tzinfo=None) == (START + timedelta(minutes=10)).replace(tzinfo=None)
    only = error_report(api.ctx, "looks", stage="aspect")
    assert [(g.stage, g.count) for g in only.groups] == [("aspect", 1)]

    over_http = api.get("/api/v1/pipelines/looks/errors").json()["groups"]
    assert [(g["stage"], g["error_type"], g["count"], len(g["events"])) for g in over_http] == [
        ("palette", "DecodeError", 6, 5),
        ("aspect", "ValueError", 1, 1),
    ]
