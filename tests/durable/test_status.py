"""The one mapping from DBOS's workflow statuses to ``WorkState``."""

from __future__ import annotations

import pytest
from dbos import WorkflowStatusString

from modelyard.durable.status import TERMINAL, WorkState, engine_statuses, from_engine


def test_every_status_dbos_has_maps_to_a_state() -> None:
    assert {s.value: from_engine(s.value) for s in WorkflowStatusString} == {
        "ENQUEUED": WorkState.WAITING,
        "DELAYED": WorkState.WAITING,
        "PENDING": WorkState.RUNNING,
        "SUCCESS": WorkState.SUCCEEDED,
        "ERROR": WorkState.FAILED,
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED": WorkState.FAILED,
        "CANCELLED": WorkState.CANCELLED,
    }


@pytest.mark.parametrize(
    ("state", "final"),
    [
        (WorkState.WAITING, False),
        (WorkState.RUNNING, False),
        (WorkState.SUCCEEDED, True),
        (WorkState.FAILED, True),
        (WorkState.CANCELLED, True),
    ],
)
def test_only_ended_states_are_final(state: WorkState, final: bool) -> None:
    assert state.is_final() is final
    assert (state in TERMINAL) is final


def test_a_status_dbos_never_had_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown workflow status"):
        from_engine("RUNNING")


def test_states_map_back_to_every_status_of_theirs() -> None:
    assert engine_statuses(WorkState.WAITING, WorkState.RUNNING) == ("ENQUEUED", "DELAYED", "PENDING")
    assert engine_statuses(WorkState.FAILED) == ("ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
