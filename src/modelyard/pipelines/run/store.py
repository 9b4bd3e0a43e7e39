"""Writing stage runs' outputs and logs to the artifact store, a batch at a time. Keys are per pipeline,
stage and event, and an identical object already there is not written again, so a repeated batch step
writes nothing twice. An output a stage wrote to a local file is moved into the store (``Storage.writing``),
never read into memory."""

from __future__ import annotations

import hashlib
import os
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.context import AppContext
from modelyard.errors import NotFound
from modelyard.pipelines.run.settle import Claimed
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.stages import Outcome, outputs
from modelyard.storage import Storage


def same_content(storage: Storage, key: str, digest: str, size: int | None) -> bool:
    """Whether ``key`` already holds exactly this content (a repeated step need not write it again)."""
    try:
        info = storage.stat(key)
    except NotFound:
        return False
    if size is not None and info.size != size:
        return False
    if info.sha256 is None:
        found = hashlib.sha256()
        for chunk in storage.open_read(key):  # by chunks: the object may be a large image
            found.update(chunk)
        return found.hexdigest() == digest
    return info.sha256 == digest


def store_file(storage: Storage, key: str, path: Path) -> None:
    """Make the local file ``path`` the object at ``key``: synced, then moved into the file the store
    hands out (a rename on a local store beside it, an upload in parts on S3)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with storage.writing(key) as target:
        shutil.move(path, target)


@dataclass
class _Planned:
    """What one run's write needs: its objects to put, the old objects to remove after, its row values."""

    puts: list[tuple[str, bytes]] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


def _plan(ctx: AppContext, pipeline: str, stage: StageSpec, run: Claimed, out: Outcome) -> _Planned:
    planned = _Planned()
    logs_key = None
    if out.logs or out.error is not None:
        logs_key = outputs.logs_key(pipeline, stage.name, run.event_id)
        planned.puts.append((logs_key, (out.logs or "").encode()))
    elif run.previous_logs:
        planned.deletes.append(run.previous_logs)
    if out.error is not None:
        planned.outcome = Outcome(
            error=out.error, trace=out.trace, seconds=out.seconds, value={"logs_key": logs_key}
        )
        return planned
    enc = outputs.encode(out.value, stage.produces, inline_bytes=ctx.settings.pipeline_inline_bytes)
    key = outputs.output_key(pipeline, stage.name, run.event_id, enc.ext)
    if same_content(ctx.storage, key, enc.sha256, enc.size):
        pass
    elif enc.file is not None:
        planned.files.append((key, enc.file))
    else:
        planned.puts.append((key, enc.data))
    if run.previous_key and run.previous_key != key:
        planned.deletes.append(run.previous_key)
    planned.outcome = Outcome(
        value={
            "output_key": key,
            "output_kind": enc.kind,
            "content_hash": enc.sha256,
            "size": enc.size,
            "result": enc.inline,
            "logs_key": logs_key,
        },
        seconds=out.seconds,
    )
    return planned


def write_all(
    ctx: AppContext, pipeline: str, stage: StageSpec, runs: list[tuple[Claimed, Outcome]]
) -> list[Outcome]:
    """Store the outputs and logs of a batch's runs, all in one ``put_many``; each outcome's value becomes
    its run's row values (or its error stays). A run whose output cannot be encoded fails alone; a
    store that refuses the writes fails every run that had something to write."""
    planned: list[_Planned] = []
    for run, out in runs:
        try:
            planned.append(_plan(ctx, pipeline, stage, run, out))
        except Exception as exc:
            planned.append(
                _Planned(outcome=Outcome(error=exc, trace=traceback.format_exc(), seconds=out.seconds))
            )
    try:
        ctx.storage.put_many([item for p in planned for item in p.puts])
        for key, path in (item for p in planned for item in p.files):
            store_file(ctx.storage, key, path)
        for key in (key for p in planned for key in p.deletes):
            ctx.storage.delete(key)
    except Exception as exc:
        return [_unstored(p, exc, traceback.format_exc()) for p in planned]
    return [p.outcome for p in planned]


def _unstored(planned: _Planned, exc: Exception, trace: str) -> Outcome:
    """A run's outcome when the store refused the batch's writes: a run that failed keeps its own error
    (without logs); one that had something to write fails with the store's error."""
    mine = planned.outcome
    if mine.error is not None:
        return Outcome(error=mine.error, trace=mine.trace, seconds=mine.seconds, value={"logs_key": None})
    if planned.puts or planned.files or planned.deletes:
        return Outcome(error=exc, trace=trace, seconds=mine.seconds)
    return mine
