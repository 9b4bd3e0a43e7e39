"""DBOS's system database as any process sees it, API-only replicas included: workflow states and cron
schedules. ``DbosDispatcher`` is the one implementation (over the public ``DBOSClient``); tests inject a
fake through ``ctx.dispatcher.set``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelyard.durable.engine import APP_NAME
from modelyard.durable.status import WorkState, from_engine

if TYPE_CHECKING:
    from dbos import DBOSClient

    from modelyard.db import Database


class Dispatcher(Protocol):
    """Workflow states and cron schedules in DBOS's system database."""

    def statuses(self, workflow_ids: list[str]) -> dict[str, WorkState]:
        """The state of each of the workflows that exist."""

    def create_schedule(
        self, name: str, workflow: str, cron: str, context: dict[str, Any], timezone: str | None
    ) -> None:
        """Create a cron schedule running ``workflow(slot, context)`` once per slot."""

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        """Schedules that run ``workflow`` (DBOS ``WorkflowSchedule`` dicts)."""

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        """One schedule, None if there is none of that name."""

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (no-op when missing)."""

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule."""

    def close(self) -> None:
        """Release the client's connections."""


class DbosDispatcher:
    """The dispatcher over ``DBOSClient``: works whether or not this process runs DBOS itself."""

    def __init__(self, client: DBOSClient):
        self.client = client

    def statuses(self, workflow_ids: list[str]) -> dict[str, WorkState]:
        """See ``Dispatcher.statuses``."""
        if not workflow_ids:
            return {}
        rows = self.client.list_workflows(workflow_ids=workflow_ids, load_input=False, load_output=False)
        return {row.workflow_id: from_engine(str(row.status)) for row in rows}

    def create_schedule(
        self, name: str, workflow: str, cron: str, context: dict[str, Any], timezone: str | None
    ) -> None:
        """See ``Dispatcher.create_schedule``."""
        self.client.create_schedule(
            schedule_name=name,
            workflow_name=workflow,
            schedule=cron,
            context=context,
            cron_timezone=timezone,
            application_name=APP_NAME,
        )

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        """See ``Dispatcher.list_schedules``."""
        return [dict(s) for s in self.client.list_schedules(workflow_name=workflow)]

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        """See ``Dispatcher.get_schedule``."""
        found = self.client.get_schedule(name)
        return dict(found) if found is not None else None

    def delete_schedule(self, name: str) -> None:
        """See ``Dispatcher.delete_schedule``."""
        self.client.delete_schedule(name)

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        """See ``Dispatcher.set_schedule_paused``."""
        if paused:
            self.client.pause_schedule(name)
        else:
            self.client.resume_schedule(name)

    def close(self) -> None:
        """See ``Dispatcher.close``."""
        self.client.destroy()


def open_dispatcher(db: Database) -> Dispatcher:
    """A dispatcher on ``db``'s system database (created or migrated first)."""
    from dbos import DBOS, DBOSClient

    url = db.system_database_url()
    DBOS.migrate(url)
    return DbosDispatcher(DBOSClient(system_database_url=url, application_name=APP_NAME))
