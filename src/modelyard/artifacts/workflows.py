"""Durable work of the artifact store: on every worker heartbeat, remove the resumable uploads abandoned
for ``upload_abandon_hours`` (``parts.sweep``). Importing registers; nothing starts here."""

from __future__ import annotations

from modelyard.artifacts import parts
from modelyard.context import AppContext
from modelyard.durable import on_tick


@on_tick
def sweep_abandoned_uploads(ctx: AppContext) -> None:
    """Remove the uploads in parts nobody touched for ``upload_abandon_hours`` (idempotent)."""
    parts.sweep(ctx.storage, ctx.settings.upload_abandon_hours * 3600)
