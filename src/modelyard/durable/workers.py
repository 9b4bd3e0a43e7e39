"""Worker liveness: one heartbeat row per process that runs durable work, and recovery of the work of
a process whose heartbeat expired.

Self-hosted DBOS recovers a crashed process's PENDING workflows only when a process with the same
executor id restarts, so liveness is ours: every worker has its own executor id and a row in
``workers``; a live worker that sees a heartbeat expire takes that row (an atomic conditional UPDATE is
the lease, so one recoverer wins) and asks DBOS to recover that executor's pending workflows.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, String, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, utcnow

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.durable")
# The DBOS version ``recover_executor`` was checked against (tests/durable/test_workers.py fails on another).
DBOS_CHECKED = "3.4.0"


class Worker(Base):
    """One process that runs durable work, with its heartbeat."""

    __tablename__ = "workers"

    executor_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # alive -> stopped (clean exit) | recovering (heartbeat expired, being recovered) -> recovered
    state: Mapped[str] = mapped_column(String(20), default="alive", index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    recovered_by: Mapped[str | None] = mapped_column(String(100), default=None)
    recovered_at: Mapped[datetime | None] = mapped_column(default=None)
    recovered_workflows: Mapped[int] = mapped_column(default=0)


def default_executor_id() -> str:
    """A new id per process: a new host never reuses a dead process's id."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def recover_executor(executor_id: str) -> int:
    """Have DBOS (launched in this process) recover the PENDING workflows of another executor; how many.

    DBOS 3.4.0 has no public call for this: ``DBOS.resume_workflow`` restarts one workflow without
    counting recovery attempts, and ``DBOS.launch`` recovers only this process's own executor id. So the
    one private call, ``DBOS._recover_pending_workflows``, lives here alone; a test pins its signature
    and the DBOS version (``DBOS_CHECKED``), and fails loudly when either changes.
    """
    from dbos import DBOS

    return len(DBOS._recover_pending_workflows([executor_id]))


def register(ctx: AppContext, executor_id: str, queues: list[str]) -> None:
    """Write this worker's row (alive, listening to ``queues``) and its first heartbeat."""
    with ctx.uow() as session:
        row = session.get(Worker, executor_id)
        if row is None:
            row = Worker(executor_id=executor_id, host=socket.gethostname(), pid=os.getpid())
            session.add(row)
        row.queues = queues
        row.state, row.heartbeat_at = "alive", utcnow()


def beat(ctx: AppContext, executor_id: str) -> None:
    """Write this worker's heartbeat."""
    with ctx.uow() as session:
        session.execute(
            update(Worker)
            .where(Worker.executor_id == executor_id)
            .values(heartbeat_at=utcnow(), state="alive")
        )


def stopped(ctx: AppContext, executor_id: str) -> None:
    """Mark this worker stopped (a clean exit; a live worker recovers what it left unfinished)."""
    with ctx.uow() as session:
        session.execute(update(Worker).where(Worker.executor_id == executor_id).values(state="stopped"))


def recover_dead(ctx: AppContext, executor_id: str) -> list[str]:
    """Recover the pending work of every other worker whose heartbeat expired (or that stopped); returns
    their executor ids."""
    cutoff = utcnow() - timedelta(seconds=ctx.settings.heartbeat_timeout_seconds)
    with ctx.uow() as session:
        stale = session.scalars(
            select(Worker.executor_id).where(
                Worker.executor_id != executor_id,
                or_(
                    (Worker.state == "alive") & (Worker.heartbeat_at < cutoff),
                    # a clean exit may leave work that did not finish in its grace period
                    Worker.state == "stopped",
                    # a recoverer that died before finishing: take the lease again
                    (Worker.state == "recovering") & (Worker.recovered_at < cutoff),
                ),
            )
        ).all()
    recovered = []
    for dead in stale:
        with ctx.uow() as session:
            won = session.execute(  # type: ignore[attr-defined]
                update(Worker)
                .where(
                    Worker.executor_id == dead,
                    Worker.state.in_(["alive", "recovering", "stopped"]),
                    or_(
                        Worker.state == "stopped", Worker.heartbeat_at < cutoff, Worker.recovered_at < cutoff
                    ),
                )
                .values(state="recovering", recovered_by=executor_id, recovered_at=utcnow())
            ).rowcount
        if not won:
            continue
        count = recover_executor(dead)
        with ctx.uow() as session:
            session.execute(
                update(Worker)
                .where(Worker.executor_id == dead)
                .values(state="recovered", recovered_workflows=Worker.recovered_workflows + count)
            )
        log.warning(
            "recovered a dead worker's work", extra={"dead": dead, "by": executor_id, "workflows": count}
        )
        recovered.append(dead)
    return recovered
