"""Writing a stage run's output and logs to the artifact store. Keys are per pipeline, stage and event, and
an identical object already there is not written again, so a repeated batch step writes nothing twice."""

from __future__ import annotations

import hashlib
import traceback

from modelyard.context import AppContext
from modelyard.errors import NotFound
from modelyard.pipelines import outputs
from modelyard.pipelines.settle import Claimed
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.stages import Outcome
from modelyard.storage import Storage


def same_content(storage: Storage, key: str, digest: str, size: int | None) -> bool:
    """Whether ``key`` already holds exactly this content (a repeated step need not write it again)."""
    try:
        info = storage.stat(key)
    except NotFound:
        return False
    if size is not None and info.size != size:
        return False
    known = info.sha256 or hashlib.sha256(storage.get_bytes(key)).hexdigest()
    return known == digest


def write(ctx: AppContext, pipeline: str, stage: StageSpec, run: Claimed, out: Outcome) -> Outcome:
    """Store one run's output and logs; the outcome's value becomes the row values (or its error stays)."""
    logs_key = None
    try:
        if out.logs or out.error is not None:
            logs_key = outputs.logs_key(pipeline, stage.name, run.event_id)
            ctx.storage.put_bytes(logs_key, (out.logs or "").encode())
        elif run.previous_logs:
            ctx.storage.delete(run.previous_logs)
        if out.error is not None:
            return Outcome(
                error=out.error, trace=out.trace, seconds=out.seconds, value={"logs_key": logs_key}
            )
        enc = outputs.encode(out.value, stage.produces, inline_bytes=ctx.settings.pipeline_inline_bytes)
        key = outputs.output_key(pipeline, stage.name, run.event_id, enc.ext)
        if not same_content(ctx.storage, key, enc.sha256, len(enc.data)):
            ctx.storage.put_bytes(key, enc.data)
        if run.previous_key and run.previous_key != key:
            ctx.storage.delete(run.previous_key)
    except Exception as exc:
        return Outcome(error=exc, trace=traceback.format_exc(), seconds=out.seconds)
    return Outcome(
        value={
            "output_key": key,
            "output_kind": enc.kind,
            "content_hash": enc.sha256,
            "size": len(enc.data),
            "result": enc.inline,
            "logs_key": logs_key,
        }
    )
