"""What the runs of a batch read: their upstream stages' outputs (inline JSON, or objects in the artifact
store) and the raw data fetched for their events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.pipelines.models import RawFetch, StageRun
from modelyard.pipelines.run.settle import Claimed
from modelyard.pipelines.spec import RAW, StageSpec
from modelyard.pipelines.stages import outputs, raw


@dataclass(slots=True)
class Upstream:
    """One upstream stage run's output, as its row describes it."""

    kind: str | None
    key: str | None
    result: Any
    content_hash: str | None
    archived: bool


def find(
    session: Session, runs: Sequence[Claimed], inputs: Sequence[str]
) -> tuple[dict[tuple[str, str], Upstream], dict[str, RawFetch]]:
    """The outputs of ``inputs`` for each run's event, by (event id, stage), and their raw data fetches."""
    eids = [r.event_id for r in runs]
    found: dict[tuple[str, str], Upstream] = {}
    others = [i for i in inputs if i != RAW]
    if others:
        for eid, stage, kind, key, result, digest, archived in session.execute(
            select(
                StageRun.event_id,
                StageRun.stage,
                StageRun.output_kind,
                StageRun.output_key,
                StageRun.result,
                StageRun.content_hash,
                StageRun.archive_key,
            ).where(StageRun.event_id.in_(eids), StageRun.stage.in_(others))
        ):
            found[(eid, stage)] = Upstream(kind, key, result, digest, archived is not None)
    fetched: dict[str, RawFetch] = {}
    if RAW in inputs:
        fetched = {
            f.event_id: f for f in session.scalars(select(RawFetch).where(RawFetch.event_id.in_(eids)))
        }
    return found, fetched


def read_inputs(
    ctx: AppContext,
    stage: StageSpec,
    run: Claimed,
    upstream: dict[tuple[str, str], Upstream],
    fetched: dict[str, RawFetch],
    scratch: Path | None = None,
) -> dict[str, Any]:
    """The values ``run`` reads, by upstream name (``raw``: the raw bytes). With a ``scratch`` folder (a
    stage that reads files), each stored input is a local file ``Path`` instead (downloaded there from
    a store without local files); inline JSON stays a value."""
    values: dict[str, Any] = {}
    for name in stage.inputs:
        if name == RAW:
            f = fetched[run.event_id]
            if scratch is not None:
                values[name] = raw.path(ctx, f.kind, f.location, scratch)
            else:
                values[name] = raw.read(ctx, run.event_id, f.kind, f.location)
            continue
        up = upstream[(run.event_id, name)]
        assert up.kind is not None and up.key is not None
        if up.kind == "json" and up.result is not None:
            values[name] = up.result
        elif scratch is not None and up.kind != "json":
            values[name] = raw.local_copy(ctx.storage, up.key, scratch)
        else:
            values[name] = outputs.decode(up.kind, ctx.storage.get_bytes(up.key))
    return values
