"""Helpers of the run tests: a command model whose command is ``label_command.py``, an AOI it feeds,
a scene that matches, and a run taken as a worker would take it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from modelyard.context import AppContext
from modelyard.geo import execution
from modelyard.geo.dispatch import RUNS
from tests.geo.conftest import make_aoi, s2_item, square

COMMAND = Path(__file__).with_name("label_command.py")


def command_model(api: TestClient, name: str = "ships", **spec: Any) -> None:
    """Register command model ``name`` running ``label_command.py`` (``spec`` overrides its fields)."""
    body = {"argv": [sys.executable, str(COMMAND)], "timeout_seconds": 60, **spec}
    resp = api.post("/api/v1/models", json={"name": name, "kind": "command", "command": body})
    assert resp.status_code == 201, resp.text


def queue_run(api: TestClient, model: str = "ships", stac_id: str = "S2B_31TFJ_20260601_0_L2A") -> int:
    """An AOI of ``model`` and a matching scene; the id of the run queued."""
    if not api.get("/api/v1/aois", params={"model": model}).json()["items"]:
        make_aoi(api, model=model, geometry=square(5.2, 45.2, 0.5))
    resp = api.post("/api/v1/scenes", json=s2_item(stac_id))
    assert resp.status_code in (200, 201), resp.text
    run_ids = [m["run_id"] for s in resp.json()["scenes"] for m in s["matches"] if m["model"] == model]
    assert len(run_ids) == 1, resp.text
    return int(run_ids[0])


def take(ctx: AppContext, run_id: int) -> execution.Started:
    """Claim and start ``run_id`` as a worker's workflow would (the token comes back in memory)."""
    claimed = RUNS.claim(ctx, 10)
    claim_id = next(c for c, args in claimed if args == (run_id,))
    started = execution.start_run(ctx, run_id, claim_id)
    assert started is not None
    return started
