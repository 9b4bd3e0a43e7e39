"""The durable event log (outbox): what happened, written in the same transaction as the change it
reports, read in id order by every consumer (SSE streams in any API process, notification sinks, the
catalog's write-back), replayable from any id still kept.

Topics are dotted; a consumer selects them by prefix (``jobs.``, ``pipelines.stage.``). Each row has a
``subject`` (the job, event or model it is about) so one thing's events are read without the others.

- ``jobs.queued``, ``jobs.started``, ``jobs.progress``, ``jobs.finished``, ``jobs.deleted`` (subject: the
  job id): ``job_id``, ``state``, ``rows_done``, ``rows_failed``, ``total_rows``, ``chunks_done``,
  ``chunk_count``.
- ``pipelines.stage.done`` (subject: the event id): a stage run ended; ``event_id``, ``pipeline_id``,
  ``stage``, ``run_id``, ``state`` (done, failed).
- ``pipelines.event.done`` (subject: the event id): an event ended; ``event_id``, ``pipeline_id``, ``state``
  (complete, failed, cancelled).
- ``registry.version.created`` (subject: the model name): ``model``, ``version``, ``sha256``, ``size``.
- ``registry.metadata.changed`` (subject: the model name): ``model``, ``metadata`` (the model's, as now).
- ``geo.run.queued``, ``geo.run.started``, ``geo.run.succeeded``, ``geo.run.failed``, ``geo.run.cancelled``,
  ``geo.results.available`` (subject: the model name): ``model``, ``run_id``, ``aoi_id``, ``scene_id``,
  ``state``… (listed with their data in ``modelyard.geo``).

``jobs.progress`` is written at most every ``PROGRESS_SECONDS`` per job and worker (a job's end always).
Delivery is at least once: a consumer that must not act twice keys its work by the event id.

Ordering. Ids grow with every append. On SQLite writers take turns, so ids become visible in order. On
PostgreSQL an id is taken at insert and becomes visible at commit, so a later id may be seen before an
earlier one whose transaction is slower: a ``Follower`` delivers in id order and stops at a gap until the
missing ids appear or the gap is older than ``event_log_gap_seconds`` (a rolled-back transaction leaves a
gap that never fills; the log's writers append last in their transactions, so an open gap is a commit in
progress, not a long transaction).

Retention: ``trim`` (run on every worker heartbeat) deletes, in bounded batches, rows older than
``event_log_retention_hours`` and all but the newest ``event_log_max_rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, String, delete, func, insert, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from modelyard.db import Base, BigId, utcnow
from modelyard.durable import on_tick

if TYPE_CHECKING:
    from modelyard.context import AppContext

# a job's progress events, at most one per this many seconds per job in one process
PROGRESS_SECONDS = 0.25
# rows one trim statement deletes, and statements one trim runs at most
TRIM_BATCH = 5000
TRIM_STATEMENTS = 20


class LogEntry(Base):
    """One row of the event log."""

    __tablename__ = "event_log"
    # SQLite: ids are never reused, even after the newest rows were trimmed
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(200), index=True, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One event as read back: its id (the stream position), topic, subject, data and when it was written."""

    id: int
    topic: str
    subject: str | None
    data: dict[str, Any]
    at: datetime

    def public(self) -> dict[str, Any]:
        """The JSON form (``GET /api/v1/log``, SSE data of ``/api/v1/log/stream``)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "subject": self.subject,
            "data": self.data,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Append:
    """An event to append: topic, data, and what it is about."""

    topic: str
    data: dict[str, Any]
    subject: str | None = None


# built once: the statement and its cache key are the larger part of a small append's cost
_APPEND = insert(LogEntry.__table__)  # type: ignore[arg-type]


def append(session: Session, topic: str, data: dict[str, Any], subject: str | None = None) -> None:
    """Append one event in ``session``'s transaction (it is seen when, and only if, that commits)."""
    append_many(session, [Append(topic, data, subject)])


def append_many(session: Session, rows: Sequence[Append]) -> None:
    """Append events in ``session``'s transaction with one INSERT (nothing when ``rows`` is empty)."""
    if not rows:
        return
    now = utcnow()
    # the table, not the class: a plain executemany, without the ORM's bulk-insert bookkeeping
    session.execute(
        _APPEND,
        [{"topic": r.topic, "subject": r.subject, "data": r.data, "created_at": now} for r in rows],
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _topics(prefixes: Sequence[str]) -> Any:
    return or_(*(LogEntry.topic.startswith(p, autoescape=True) for p in prefixes))


def read(
    session: Session,
    *,
    after: int = 0,
    prefixes: Sequence[str] = (),
    subject: str | None = None,
    limit: int = 100,
    upto: int | None = None,
) -> list[LogEvent]:
    """Events with ``after < id (<= upto)``, in id order, of topics starting with any of ``prefixes``
    (all when none) and of ``subject`` (any when None); at most ``limit``."""
    query = select(LogEntry).where(LogEntry.id > after)
    if upto is not None:
        query = query.where(LogEntry.id <= upto)
    if prefixes:
        query = query.where(_topics(prefixes))
    if subject is not None:
        query = query.where(LogEntry.subject == subject)
    rows = session.scalars(query.order_by(LogEntry.id).limit(limit))
    return [LogEvent(r.id, r.topic, r.subject, r.data, _aware(r.created_at)) for r in rows]


def head(session: Session) -> int:
    """The highest id written (0 for an empty log)."""
    return session.scalar(select(func.max(LogEntry.id))) or 0


@dataclass
class Follower:
    """A position in the log, moved forward by ``poll``: each event once, in id order (see the module's
    ordering notes). One consumer each: ``stream`` (async code) or ``iterate`` (a thread) drives it.

    ``after`` resumes after that id (an SSE ``Last-Event-ID``); None starts at what commits from now on.
    """

    ctx: AppContext
    prefixes: tuple[str, ...] = ()
    subject: str | None = None
    after: int | None = None
    limit: int = 500
    _last: int = field(default=0, init=False)
    _skip: set[int] = field(default_factory=set, init=False)
    _gap: tuple[int, float] | None = field(default=None, init=False)
    _started: bool = field(default=False, init=False)

    @property
    def position(self) -> int:
        """The id up to which the log has been read."""
        return self._last

    def _ordered(self) -> bool:
        # the embedded database has one writer at a time, so ids become visible in order
        return self.ctx.db.embedded

    def start(self) -> int:
        """Fix the starting position now (``poll`` does it on first use); returns it."""
        if self._started:
            return self._last
        self._started = True
        if self.after is not None:
            self._last = self.after
            return self._last
        with self.ctx.uow() as session:
            top = head(session)
            if self._ordered():
                self._last = top
                return top
            # ids under the head may still commit: start below the recent ones, skipping those seen now
            since = utcnow() - timedelta(seconds=self.ctx.settings.event_log_gap_seconds)
            recent = session.scalars(
                select(LogEntry.id).where(LogEntry.created_at >= since, LogEntry.id <= top)
            ).all()
        self._last = min(recent) - 1 if recent else top
        self._skip = set(recent)
        return self._last

    def _upto(self, session: Session) -> int:
        """The highest id every id at or below which is visible, or given up on (gaps past the horizon)."""
        if self._ordered():
            return head(session)
        rows = session.execute(
            select(LogEntry.id, LogEntry.created_at)
            .where(LogEntry.id > self._last)
            .order_by(LogEntry.id)
            .limit(self.limit)
        ).all()
        horizon = self.ctx.settings.event_log_gap_seconds
        old = utcnow() - timedelta(seconds=horizon)
        upto = self._last
        for row_id, created in rows:
            if row_id != upto + 1:  # ids upto+1 .. row_id-1 are not visible (yet)
                if self._gap is None or self._gap[0] != upto:
                    self._gap = (upto, time.monotonic())
                waited = time.monotonic() - self._gap[1]
                if _aware(created) >= old and waited < horizon:
                    break
            upto = row_id
        return upto

    def poll(self) -> list[LogEvent]:
        """The next events (at most ``limit``), possibly none."""
        self.start()
        with self.ctx.uow() as session:
            upto = self._upto(session)
            if upto <= self._last:
                return []
            events = read(
                session,
                after=self._last,
                upto=upto,
                prefixes=self.prefixes,
                subject=self.subject,
                limit=self.limit,
            )
        self._last = events[-1].id if len(events) == self.limit else upto
        if self._skip:
            events = [e for e in events if e.id not in self._skip]
            self._skip = {i for i in self._skip if i > self._last}
        return events

    async def stream(self, poll_seconds: float | None = None) -> AsyncGenerator[LogEvent]:
        """The events from this position on, forever: the log is re-read every ``poll_seconds`` (the
        ``event_log_poll_seconds`` setting), and at once when this process's bus carries an event."""
        await asyncio.to_thread(self.start)
        interval = self.ctx.settings.event_log_poll_seconds if poll_seconds is None else poll_seconds
        woken = asyncio.Event()

        async def listen() -> None:
            async for _ in self.ctx.bus.subscribe(*self.prefixes):
                woken.set()

        listener = asyncio.create_task(listen())
        try:
            while True:
                woken.clear()
                for event in await asyncio.to_thread(self.poll):
                    yield event
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), interval)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def iterate(self, stop: threading.Event) -> Iterator[LogEvent]:
        """``stream`` for a thread: the events until ``stop`` is set (checked every
        ``event_log_poll_seconds`` at the latest)."""
        while not stop.is_set():
            events = self.poll()
            yield from events
            if not events:
                stop.wait(self.ctx.settings.event_log_poll_seconds)


def follow(
    ctx: AppContext,
    prefixes: Sequence[str] = (),
    *,
    subject: str | None = None,
    after: int | None = None,
) -> AsyncGenerator[LogEvent]:
    """The log's events after ``after`` (or from now on), of topics starting with any of ``prefixes``
    and of ``subject``, forever (see ``Follower.stream``)."""
    return Follower(ctx, tuple(prefixes), subject, after).stream()


def trim(session: Session, *, retention_hours: float, max_rows: int) -> int:
    """Delete the oldest rows (at most ``TRIM_BATCH``) up to the newest one older than ``retention_hours``
    or past the newest ``max_rows`` ids; returns how many went. Two index lookups when nothing is due."""
    cutoff = utcnow() - timedelta(hours=retention_hours)
    aged = session.scalar(
        select(LogEntry.id).where(LogEntry.created_at < cutoff).order_by(LogEntry.created_at.desc()).limit(1)
    )
    upto = max(aged or 0, head(session) - max_rows)
    if upto <= 0:
        return 0
    batch = select(LogEntry.id).where(LogEntry.id <= upto).order_by(LogEntry.id).limit(TRIM_BATCH)
    gone = session.execute(
        delete(LogEntry).where(LogEntry.id.in_(batch.scalar_subquery())),
        execution_options={"synchronize_session": False},
    )
    count: int = getattr(gone, "rowcount", 0)
    return count


@on_tick
def trim_log(ctx: AppContext) -> None:
    """The retention of the event log, on every worker heartbeat (every worker runs it: harmless): up to
    ``TRIM_STATEMENTS`` bounded deletes, each its own transaction."""
    for _ in range(TRIM_STATEMENTS):
        with ctx.uow() as session:
            count = trim(
                session,
                retention_hours=ctx.settings.event_log_retention_hours,
                max_rows=ctx.settings.event_log_max_rows,
            )
        if count < TRIM_BATCH:
            break
