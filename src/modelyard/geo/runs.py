"""Geo runs: what a match starts. ``enqueue_runs`` records queued runs (once per model, AOI and scene)
and announces each new one on the event log."""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.durable import log
from modelyard.geo.models import GeoRun, RunState

Key = tuple[str, int, int]  # (model, AOI id, scene id)


def enqueue_runs(session: Session, matches: list[Key]) -> list[tuple[int, bool]]:
    """Queue a run for each (model, AOI id, scene id) in ``session``'s transaction, skipping any that
    exists (posting the same scene twice never starts a second run); returns (run id, whether new) per
    match, in order. Each new run is announced as ``geo.run.queued`` (subject: the model)."""
    if not matches:
        return []
    now = db.utcnow()
    rows = [
        {"model": m, "aoi_id": a, "scene_id": s, "state": RunState.QUEUED, "attempts": 0, "created_at": now}
        for m, a, s in dict.fromkeys(matches)
    ]
    inserted = db.insert_new_returning(
        session, GeoRun.__table__, rows, GeoRun.id, GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id
    )
    new: dict[Key, int] = {(m, a, s): i for i, m, a, s in inserted}
    log.append_many(
        session,
        [
            log.Append("geo.run.queued", {"run_id": i, "model": k[0], "aoi_id": k[1], "scene_id": k[2]}, k[0])
            for k, i in sorted(new.items(), key=lambda kv: kv[1])
        ],
    )
    ids = {**_ids(session, [k for k in dict.fromkeys(matches) if k not in new]), **new}
    return [(ids[k], k in new) for k in matches]


def _ids(session: Session, keys: list[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for start in range(0, len(keys), 300):
        chunk = keys[start : start + 300]
        rows = session.execute(
            select(GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id, GeoRun.id).where(
                tuple_(GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id).in_(chunk)
            )
        )
        found.update({(m, a, s): i for m, a, s, i in rows})
    return found
