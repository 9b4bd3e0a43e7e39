"""The durable workflow cron schedules start (DBOS), under stable names; importing registers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS

from modelyard.durable import current
from modelyard.schedules import service


@DBOS.step(name="jobs.fire")
def fire_step(slot: str, context: dict[str, Any]) -> str | None:
    """Start the scheduled job type of one slot (idempotent per slot)."""
    return service.fire(current(), context, slot)


@DBOS.workflow(name=service.FIRE_WORKFLOW)
def fire_schedule(scheduled_at: datetime, context: dict[str, Any]) -> str | None:
    """What a cron schedule starts, once per slot."""
    return fire_step(scheduled_at.isoformat(), context)
