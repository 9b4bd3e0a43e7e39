"""Durable work of the catalog: on every worker heartbeat, harvest the finished events of bound pipelines
into inferences (see ``catalog.binding`` for why a sweep), then advance running re-inferences
(``catalog.reinfer``). Importing registers; nothing starts here."""

from __future__ import annotations

from modelyard.catalog import binding, reinfer
from modelyard.context import AppContext
from modelyard.durable import on_tick


@on_tick
def harvest_inferences(ctx: AppContext) -> None:
    """Store the outputs of finished events of bound pipelines as inferences (idempotent)."""
    while binding.harvest(ctx) == binding.HARVEST_BATCH:
        pass


@on_tick
def advance_reinferences(ctx: AppContext) -> None:
    """One step of every running re-inference: submit records still due, or switch once all are done."""
    reinfer.advance(ctx)
