"""Jobs at ``/metrics``: how many jobs are in each state (read at scrape time)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from modelyard.jobs.models import Job

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.jobs")


class JobsCollector(Collector):
    """The ``modelyard_jobs`` gauge, by state."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauge; nothing (and a log line) if the database cannot be read."""
        try:
            with self.ctx.uow() as session:
                jobs = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        except Exception:
            log.exception("job metrics unavailable")
            return
        states = GaugeMetricFamily("modelyard_jobs", "Jobs by state.", labels=["state"])
        for state, count in jobs:
            states.add_metric([state], count)
        yield states
