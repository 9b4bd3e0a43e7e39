"""Durable work of the catalog: on every worker heartbeat, harvest the finished events of bound pipelines
into inferences (see ``catalog.binding`` for why a sweep), then wake the re-inference thread of the
process (``catalog.runner``), which advances running re-inferences. Importing registers; nothing starts
here."""

from __future__ import annotations

from modelyard.catalog import binding
from modelyard.context import AppContext
from modelyard.durable import on_tick


@on_tick
def harvest_inferences(ctx: AppContext) -> None:
    """Store the outputs of finished events of bound pipelines as inferences (idempotent)."""
    while binding.harvest(ctx) == binding.HARVEST_BATCH:
        pass


@on_tick
def advance_reinferences(ctx: AppContext) -> None:
    """Wake this process's re-inference thread: it computes the records still due, then switches."""
    ctx.reinfer.get().wake(ctx)
