"""The event log: written with the change it reports or not at all, read in id order by followers in any
process (SSE included, resumable with Last-Event-ID), trimmed by retention; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from modelyard.app import create_app
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import engine, log
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer, push_model
from tests.jobs.conftest import COLUMNS, features

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def context(client: TestClient) -> AppContext:
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def write(ctx: AppContext, *topics: str, subject: str | None = None) -> list[int]:
    """Append one event per topic in one transaction; their ids."""
    with ctx.uow() as session:
        before = log.head(session)
        log.append_many(session, [log.Append(t, {"n": i}, subject) for i, t in enumerate(topics)])
        ids = session.scalars(select(log.LogEntry.id).where(log.LogEntry.id > before)).all()
    return sorted(ids)


def sse_messages(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages of an SSE response's lines (id, event, data each)."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if current:
                out.append(current)
                current = {}
                if len(out) == count:
                    return out
            continue
        field, _, value = line.partition(": ")
        current[field] = orjson.loads(value) if field == "data" else value
    return out


@pytest.fixture
def other(settings: Settings) -> Iterator[TestClient]:
    """A second app on the same database: another process, as far as the first can tell."""
    with TestClient(create_app(settings), headers=AUTH) as c:
        yield c


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings)) as live:
        yield live


def test_an_event_appended_in_a_transaction_that_rolls_back_never_appears(client: TestClient) -> None:
    ctx = context(client)
    with pytest.raises(RuntimeError), ctx.uow() as session:
        log.append(session, "jobs.finished", {"job_id": "lost"}, "lost")
        raise RuntimeError("the change failed")
    [kept] = write(ctx, "jobs.finished", subject="kept")
    with ctx.uow() as session:
        events = log.read(session, after=0)
    assert [(e.id, e.subject) for e in events] == [(kept, "kept")]


def test_read_selects_by_topic_prefix_and_subject_in_id_order(client: TestClient) -> None:
    ctx = context(client)
    ids = write(ctx, "jobs.progress", "registry.version.created", "jobs.finished", "jobsx.other", subject="a")
    write(ctx, "jobs.finished", subject="b")
    with ctx.uow() as session:
        jobs_a = log.read(session, prefixes=("jobs.",), subject="a")
        both = log.read(session, prefixes=("jobs.", "registry."), subject="a", limit=2)
    assert [e.id for e in jobs_a] == [ids[0], ids[2]]
    assert [e.topic for e in both] == ["jobs.progress", "registry.version.created"]


def test_a_follower_started_now_sees_only_what_commits_after(client: TestClient) -> None:
    ctx = context(client)
    write(ctx, "jobs.finished")
    follower = log.Follower(ctx, ("jobs.",))
    follower.start()
    [new] = write(ctx, "jobs.finished")
    assert [e.id for e in follower.poll()] == [new]
    assert follower.poll() == []


def test_a_write_by_another_app_reaches_this_apps_log_stream(server: LiveServer, other: TestClient) -> None:
    url = f"{server.url}/api/v1/log/stream"
    with httpx.stream("GET", url, params={"topics": "registry."}, headers=AUTH, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        other.post("/api/v1/models", json={"name": "m", "metadata": {"team": "a"}})
        other.patch("/api/v1/models/m", json={"metadata": {"team": "b"}})
        [message] = sse_messages(resp.iter_lines(), 1)
    assert message["event"] == "registry.metadata.changed"
    assert message["data"]["data"] == {"model": "m", "metadata": {"team": "b"}}
    assert int(message["id"]) == message["data"]["id"]


def test_last_event_id_resumes_with_exactly_the_missed_events_in_order(
    server: LiveServer, other: TestClient
) -> None:
    ids = write(context(other), "jobs.queued", "jobs.started", "registry.version.created", "jobs.finished")
    headers = {**AUTH, "Last-Event-ID": str(ids[0])}
    url = f"{server.url}/api/v1/log/stream"
    with httpx.stream("GET", url, params={"topics": "jobs."}, headers=headers, timeout=10) as resp:
        messages = sse_messages(resp.iter_lines(), 2)
    assert [(int(m["id"]), m["event"]) for m in messages] == [
        (ids[1], "jobs.started"),
        (ids[3], "jobs.finished"),
    ]
    bad = httpx.get(url, headers={**AUTH, "Last-Event-ID": "x"}, timeout=10)
    assert (bad.status_code, bad.json()["field"]) == (400, "Last-Event-ID")


def test_a_job_cancelled_by_another_app_ends_this_apps_job_stream(
    server: LiveServer, other: TestClient, model_dir: Path
) -> None:
    push_model(other, model_dir / "logreg.onnx", "churn", {"columns": COLUMNS})
    job = other.post("/api/v1/jobs", json={"model": "churn", "rows": features(3).tolist()}).json()
    url = f"{server.url}/api/v1/jobs/{job['id']}/events"
    with httpx.stream("GET", url, headers=AUTH, timeout=10) as resp:
        lines = resp.iter_lines()
        [queued] = sse_messages(lines, 1)
        assert other.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
        [finished] = sse_messages(lines, 1)
    assert (queued["event"], queued["data"]["state"]) == ("queued", "queued")
    assert (finished["event"], finished["data"]["state"]) == ("finished", "cancelled")
    assert int(finished["id"]) > int(queued["id"])


def test_the_log_page_follows_next_and_needs_the_read_scope(client: TestClient) -> None:
    ids = write(context(client), "jobs.queued", "jobs.finished", "registry.version.created")
    first = client.get("/api/v1/log", params={"limit": 2}).json()
    assert [e["id"] for e in first["items"]] == ids[:2] and first["next"] == ids[1]
    rest = client.get("/api/v1/log", params={"after": first["next"], "topics": "registry."}).json()
    assert [e["topic"] for e in rest["items"]] == ["registry.version.created"]
    assert client.get("/api/v1/log", params={"after": rest["next"]}).json() == {"items": [], "next": ids[2]}
    assert client.get("/api/v1/log", headers={"Authorization": ""}).status_code == 401


def test_registering_a_version_emits_registry_version_created(client: TestClient, model_dir: Path) -> None:
    version = push_model(client, model_dir / "logreg.onnx", "churn")
    [event] = client.get("/api/v1/log", params={"topics": "registry.version."}).json()["items"]
    assert (event["topic"], event["subject"]) == ("registry.version.created", "churn")
    assert event["data"] == {
        "model": "churn",
        "version": 1,
        "sha256": version["sha256"],
        "size": version["size"],
    }


def test_retention_trims_the_oldest_rows_past_the_age_and_the_count(settings: Settings) -> None:
    limited = settings.model_copy(update={"event_log_max_rows": 3, "event_log_retention_hours": 1.0})
    with TestClient(create_app(limited), headers=AUTH) as c:
        ctx = context(c)
        with ctx.uow() as session:
            old = utcnow() - timedelta(hours=2)
            session.execute(insert(log.LogEntry), [{"topic": "jobs.old", "data": {}, "created_at": old}])
        ids = write(ctx, *["jobs.progress"] * 6)
        assert log.trim_log in engine.TICKS  # runs on every worker heartbeat
        log.trim_log(ctx)
        with ctx.uow() as session:
            left = [e.id for e in log.read(session)]
    assert left == ids[-3:]


def test_an_old_row_is_trimmed_with_the_rows_before_it(client: TestClient) -> None:
    ctx = context(client)
    first = write(ctx, "jobs.progress", "jobs.progress")
    with ctx.uow() as session:
        old = utcnow() - timedelta(hours=ctx.settings.event_log_retention_hours + 1)
        session.execute(insert(log.LogEntry), [{"topic": "jobs.old", "data": {}, "created_at": old}])
    kept = write(ctx, "jobs.progress")
    with ctx.uow() as session:
        assert log.trim(session, retention_hours=ctx.settings.event_log_retention_hours, max_rows=100) == 3
        assert [e.id for e in log.read(session)] == kept
    assert len(first) == 2


def test_a_trim_deletes_in_bounded_batches(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(client)
    monkeypatch.setattr(log, "TRIM_BATCH", 2)
    ids = write(ctx, *["jobs.progress"] * 7)
    with ctx.uow() as session:
        assert log.trim(session, retention_hours=1.0, max_rows=1) == 2
    log.trim_log(replace(ctx, settings=ctx.settings.model_copy(update={"event_log_max_rows": 1})))
    with ctx.uow() as session:
        assert [e.id for e in log.read(session)] == ids[-1:]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_slower_transaction_committing_late_is_not_skipped(settings: Settings) -> None:
    """PostgreSQL takes ids at insert and shows them at commit: a follower waits at the gap."""
    with TestClient(create_app(settings), headers=AUTH) as c:
        ctx = context(c)
        follower = log.Follower(ctx, after=0)
        slow, fast = ctx.sessions(), ctx.sessions()
        try:
            log.append(slow, "jobs.progress", {"who": "slow"})
            slow.flush()
            log.append(fast, "jobs.progress", {"who": "fast"})
            fast.commit()
            assert follower.poll() == []  # the slow one's id is not visible yet: wait at the gap
            slow.commit()
            assert [e.data["who"] for e in follower.poll()] == ["slow", "fast"]
        finally:
            slow.close()
            fast.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_gap_left_by_a_rollback_is_passed_once_past_the_horizon(settings: Settings) -> None:
    quick = settings.model_copy(update={"event_log_gap_seconds": 0.001})
    with TestClient(create_app(quick), headers=AUTH) as c:
        ctx = context(c)
        follower = log.Follower(ctx, after=0)
        with ctx.sessions() as lost:
            log.append(lost, "jobs.progress", {"who": "lost"})
            lost.rollback()
        [kept] = write(ctx, "jobs.progress")
        events = [e for _ in range(3) for e in follower.poll()]  # the gap is seen, then passed
    assert [e.id for e in events] == [kept]


def test_a_thread_follows_the_log_until_told_to_stop(client: TestClient) -> None:
    ctx = context(client)
    follower = log.Follower(ctx, ("jobs.",))
    follower.start()
    ids = write(ctx, "jobs.queued", "registry.version.created", "jobs.finished")
    stop = threading.Event()
    got: list[int] = []

    def consume() -> None:
        for event in follower.iterate(stop):
            got.append(event.id)
            if event.topic == "jobs.finished":
                stop.set()

    thread = threading.Thread(target=consume)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and got == [ids[0], ids[2]]
