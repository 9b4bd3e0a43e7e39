"""Submitting events: many at once, every one checked before any is stored (one 422 lists each bad event),
and idempotent by name (a name already submitted is reported as it is, not run again). No FastAPI, no DBOS.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import new_id, utcnow
from modelyard.errors import BadRequest, FetchFailed, UrlRefused, ValidationFailed
from modelyard.fetch import check_url, resolve
from modelyard.pipelines.models import Event, EventState, StageRun, StageState
from modelyard.pipelines.schemas import EventCreate, EventFolder, EventSubmitted
from modelyard.pipelines.service import get_pipeline, load_spec, wake
from modelyard.pipelines.spec import RAW, PipelineSpec
from modelyard.pipelines.stages.sources import parse_source

CHUNK = 500  # names per IN (...) lookup
RESOLVED_HOSTS = 64  # distinct URL hosts one submission looks up (a bulk of unresolvable names stays quick)


def folder_events(ctx: AppContext, body: EventFolder) -> list[EventCreate]:
    """The events of ``body`` (see ``EventFolder``); a folder that is not one in the data dir, or with no
    file matching, is a ``BadRequest`` naming ``folder``, one with more files than a request takes a
    ``ValidationFailed`` saying the limit. Each file is then checked like any event's source."""
    try:
        source = parse_source(body.folder, data_dir=ctx.settings.data_dir)
    except BadRequest as exc:
        raise BadRequest(exc.detail, field="folder") from None
    if source.kind != "file" or not Path(source.value).is_dir():
        raise BadRequest(f"{body.folder[:200]!r} is not a folder in the data dir", field="folder")
    root = ctx.settings.data_dir.resolve()
    limit = ctx.settings.pipeline_max_events_per_request
    found: list[EventCreate] = []
    for entry in sorted(os.scandir(source.value), key=lambda e: e.name):
        if not entry.is_file() or not fnmatch.fnmatchcase(entry.name, body.pattern):
            continue
        if len(found) == limit:
            raise ValidationFailed(
                f"folder {body.folder[:200]!r} holds more than {limit} matching files; the limit is {limit}"
                " a request: submit it by parts (a narrower pattern)",
                errors=[{"field": "folder", "detail": "too many files for one request"}],
                field="folder",
            )
        name = Path(entry.path).relative_to(root).as_posix()
        found.append(EventCreate(name=name, source=entry.path, stages=body.stages, params=body.params))
    if not found:
        raise BadRequest(f"no file in {body.folder[:200]!r} matches {body.pattern!r}", field="folder")
    return found


def _check_events(ctx: AppContext, spec: PipelineSpec, events: Sequence[EventCreate]) -> list[list[str]]:
    """The stages each event needs; ``ValidationFailed`` listing every bad event (nothing is stored)."""
    problems: list[dict[str, Any]] = []
    limit = ctx.settings.pipeline_max_events_per_request
    if len(events) > limit:
        raise ValidationFailed(
            f"{len(events)} events in one request; the limit is {limit}",
            errors=[{"field": "events", "detail": "too many events in one request"}],
            field="events",
        )
    closures: list[list[str]] = []
    data_dir = ctx.settings.data_dir
    refused: dict[str, str | None] = {}  # URL host -> why it is refused (None: it is not)
    for i, event in enumerate(events):
        try:
            source = parse_source(event.source, data_dir=data_dir)
            if source.kind == "http" and not ctx.settings.allow_private_urls:
                _check_public(source.value, refused)
        except BadRequest as exc:
            problems.append({"field": f"events[{i}].source", "detail": exc.detail, "name": event.name})
        unknown = [s for s in event.stages or [] if s not in spec.stages and s != RAW]
        if unknown:
            problems.append(
                {
                    "field": f"events[{i}].stages",
                    "detail": f"unknown stages {unknown} (known: {list(spec.stages)})",
                    "name": event.name,
                }
            )
            closures.append([])
        else:
            closures.append(spec.closure(event.stages))
    if problems:
        raise ValidationFailed(
            f"{len(problems)} of {len(events)} events are invalid (none was stored): "
            f"{problems[0]['field']}: {problems[0]['detail']}",
            errors=problems,
        )
    return closures


def _not_looked_up(host: str, port: int) -> list[str]:
    raise FetchFailed(f"{host} is not looked up at submission")


def _check_public(url: str, refused: dict[str, str | None]) -> None:
    """``UrlRefused`` when ``url``'s host is or resolves to a private address (each host looked up once per
    request, the first ``RESOLVED_HOSTS`` of them; IP literals always). A host not looked up, or that does
    not resolve now, is let through: its fetch checks it again, and fails or is retried then."""
    host = urlsplit(url).hostname or ""
    if host not in refused:
        resolver = resolve if len(refused) < RESOLVED_HOSTS else _not_looked_up
        try:
            check_url(url, allow_private=False, resolver=resolver)
            refused[host] = None
        except UrlRefused as exc:
            refused[host] = exc.detail
        except FetchFailed:
            refused[host] = None
    detail = refused[host]
    if detail is not None:
        raise UrlRefused(detail, field="source")


def _existing(session: Session, pipeline_id: str, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for i in range(0, len(names), CHUNK):
        rows = session.execute(
            select(Event.name, Event.id, Event.state).where(
                Event.pipeline_id == pipeline_id, Event.name.in_(names[i : i + CHUNK])
            )
        ).all()
        found.update({name: (eid, state) for name, eid, state in rows})
    return found


def submit_events(ctx: AppContext, pipeline_name: str, events: Sequence[EventCreate]) -> list[EventSubmitted]:
    """Store new events (each with its stage runs, raw fetch first) and report existing ones as they are."""
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
    pipeline_id, version = pipeline.id, pipeline.latest_version
    spec = load_spec(ctx, pipeline_id, version)[1]
    closures = _check_events(ctx, spec, events)
    for attempt in range(3):
        try:
            result = _insert_events(ctx, pipeline_id, version, events, closures)
            break
        except IntegrityError:  # another request stored some of these names meanwhile: look again
            with ctx.uow() as session:  # ... unless the pipeline was deleted meanwhile: 404
                get_pipeline(session=session, name=pipeline_name)
            if attempt == 2:
                raise
    wake(ctx)
    return result


def _insert_events(
    ctx: AppContext, pipeline_id: str, version: int, events: Sequence[EventCreate], closures: list[list[str]]
) -> list[EventSubmitted]:
    now = utcnow()
    out: list[EventSubmitted] = []
    new_events: list[dict[str, Any]] = []
    new_runs: list[dict[str, Any]] = []
    with ctx.uow() as session:
        existing = _existing(session, pipeline_id, list(dict.fromkeys(e.name for e in events)))
        for event, stages in zip(events, closures, strict=True):
            if event.name in existing:
                eid, state = existing[event.name]
                out.append(EventSubmitted(id=eid, name=event.name, created=False, state=state))
                continue
            eid = new_id()
            existing[event.name] = (eid, EventState.PENDING)
            new_events.append(
                {
                    "id": eid,
                    "pipeline_id": pipeline_id,
                    "version": version,
                    "name": event.name,
                    "source": event.source,
                    "stages": stages,
                    "params": event.params,
                    "state": EventState.PENDING,
                    "runs": 1,
                    "created_at": now,
                }
            )
            for stage in stages:
                ready = stage == RAW
                new_runs.append(
                    {
                        "event_id": eid,
                        "pipeline_id": pipeline_id,
                        "stage": stage,
                        "state": StageState.READY if ready else StageState.PENDING,
                        "ready_at": now if ready else None,
                        "attempts": 0,
                        "writes": 0,
                        "cached": False,
                        "force": False,
                    }
                )
            out.append(EventSubmitted(id=eid, name=event.name, created=True, state=EventState.PENDING))
        if new_events:
            session.execute(insert(Event), new_events)
            session.execute(insert(StageRun), new_runs)
    return out
