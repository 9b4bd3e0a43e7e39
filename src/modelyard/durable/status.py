"""The one mapping from the engine's (DBOS's) workflow statuses to the states of durable work.

Nothing else in modelyard spells a DBOS status: the claimed-work sweep, the queue monitor and the
dispatcher all ask here.
"""

from __future__ import annotations

from enum import StrEnum


class WorkState(StrEnum):
    """waiting (enqueued or delayed) -> running -> succeeded | failed | cancelled"""

    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the workflow will not run again on its own."""
        return self in TERMINAL


TERMINAL = frozenset({WorkState.SUCCEEDED, WorkState.FAILED, WorkState.CANCELLED})

# Every value of DBOS's ``WorkflowStatusString`` (dbos 3.4.0; a test fails if DBOS adds one).
_FROM_ENGINE: dict[str, WorkState] = {
    "ENQUEUED": WorkState.WAITING,
    "DELAYED": WorkState.WAITING,
    "PENDING": WorkState.RUNNING,
    "SUCCESS": WorkState.SUCCEEDED,
    "ERROR": WorkState.FAILED,
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": WorkState.FAILED,
    "CANCELLED": WorkState.CANCELLED,
}


def from_engine(status: str) -> WorkState:
    """The state of a workflow in DBOS status ``status`` (ValueError for a status DBOS never had)."""
    try:
        return _FROM_ENGINE[status]
    except KeyError:
        raise ValueError(f"unknown workflow status {status!r}") from None


def engine_statuses(*states: WorkState) -> tuple[str, ...]:
    """The DBOS statuses that map to any of ``states`` (to filter DBOS's tables or listings)."""
    return tuple(s for s, state in _FROM_ENGINE.items() if state in states)
