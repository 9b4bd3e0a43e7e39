"""The one private DBOS call (recovering another executor's workflows) is where and what it was checked
to be: this fails loudly when DBOS changes it, so ``durable.workers.recover_executor`` gets looked at."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from dbos import DBOS

from modelyard.durable import workers


def test_dbos_is_the_version_the_private_recovery_call_was_checked_against() -> None:
    assert version("dbos") == workers.DBOS_CHECKED, (
        "DBOS changed: check that DBOS._recover_pending_workflows still recovers another executor's "
        "PENDING workflows (or that a public call now does), then update DBOS_CHECKED"
    )


def test_the_private_recovery_call_takes_executor_ids_and_returns_handles() -> None:
    found = inspect.getattr_static(DBOS, "_recover_pending_workflows")
    assert isinstance(found, classmethod)
    params = list(inspect.signature(DBOS._recover_pending_workflows).parameters)
    assert params == ["executor_ids"]
    assert "List[WorkflowHandle" in str(inspect.signature(DBOS._recover_pending_workflows).return_annotation)


def test_no_public_call_recovers_another_executors_workflows() -> None:
    public = {name for name in dir(DBOS) if not name.startswith("_") and "recover" in name.lower()}
    assert public == set(), f"DBOS now has {public}: use it in recover_executor instead of the private call"
