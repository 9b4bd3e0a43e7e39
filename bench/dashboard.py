"""Dashboard benchmark: page render time of the busiest pages on the embedded default (SQLite + local
folder) with many rows behind them.

A ``create_app`` app (no worker: the rows stay as seeded) gets one pipeline with N events (100,000 in a
full pass) in a realistic mix of states, each with its two stage runs, a tenth of them failed with one
of a few error types; and M jobs (20,000) across the job states. Then each page is fetched through the
dashboard as a signed-in browser would (in process, so the figures are the server's render time, not
the network's): the pipeline page (DAG, stage counts, the events table, error groups), the same page
filtered to failed events, the pages either side of the middle complete event (reached by its keyset
cursor, as the page links to them), the jobs list and its failed filter, the overview and the queues
page. p50/p95/max of R renders each (50) after two warm-ups. Goal: p95 <= 200 ms.

Then the same pages again over HTTP from a real ``modelyard serve`` process with its in-process worker on
the same seeded database (as ``make run`` starts it): the figures add the HTTP round trip, and the worker
meanwhile takes the seeded waiting work (stage runs whose raw data does not exist fail at once, queued
jobs without input fail), as a busy server would. ``--no-served`` skips this pass.

Prints a table and writes JSON to ``bench/results/dashboard.json`` (``dashboard-quick.json`` with
``--quick``).

    .venv/bin/python bench/dashboard.py            # full pass (100,000 events, 20,000 jobs)
    .venv/bin/python bench/dashboard.py --quick    # smoke run (10,000 events, 2,000 jobs)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "src"), str(BENCH.parent)]

from tests.e2e.serve import modelyard_serve  # noqa: E402

from modelyard.app import create_app  # noqa: E402
from modelyard.jobs.models import Job  # noqa: E402
from modelyard.pipelines.events import event_cursor  # noqa: E402
from modelyard.pipelines.models import Event, Pipeline, StageRun  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

KEY = "bench-dashboard-admin-key"
GOAL_P95_MS = 200.0
SHARED_LOAD = 1.5  # a 1-minute load average above this means other work ran beside the benchmark
PIPELINE = """
name: images
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  shape: {type: inferrer, inferrer: aspect_ratio}
"""
# event state -> (share, palette stage state, shape stage state)
MIX = {
    "complete": (0.80, "done", "done"),
    "failed": (0.10, "failed", "skipped"),
    "running": (0.04, "done", "running"),
    "pending": (0.05, "ready", "pending"),
    "cancelled": (0.01, "skipped", "skipped"),
}
ERRORS = ["DecodeError", "FetchFailed", "TimeoutError", "ValueError"]
JOB_STATES = {"succeeded": 0.85, "failed": 0.08, "running": 0.02, "queued": 0.03, "cancelled": 0.02}


def _seed(client: TestClient, events: int, jobs: int) -> float:
    """The pipeline through the API, then its events, stage runs and the jobs straight into the tables."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/yaml"}
    resp = client.post("/api/v1/pipelines", content=PIPELINE, headers=headers)
    assert resp.status_code in (200, 201), resp.text
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.engine.connect() as conn:
        pipeline_id = conn.scalar(select(Pipeline.id).where(Pipeline.name == "images"))
    rng = random.Random(0)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    states = list(MIX)
    weights = [MIX[s][0] for s in states]
    with ctx.engine.begin() as conn:
        for start in range(0, events, 5000):
            evs, runs = [], []
            for i in range(start, min(start + 5000, events)):
                state = rng.choices(states, weights)[0]
                _, first, second = MIX[state]
                at = now - dt.timedelta(seconds=events - i)
                eid = uuid.uuid4().hex
                error = rng.choice(ERRORS) if state == "failed" else None
                evs.append(
                    {
                        "id": eid,
                        "pipeline_id": pipeline_id,
                        "version": 1,
                        "name": f"event-{i:06d}",
                        "source": f"incoming/{i}.png",
                        "stages": ["palette", "shape"],
                        "params": {},
                        "state": state,
                        "error_stage": "palette" if error else None,
                        "error": f"{error}: could not read the image" if error else None,
                        "runs": 1,
                        "created_at": at,
                        "started_at": at,
                        "finished_at": at if state in ("complete", "failed", "cancelled") else None,
                    }
                )
                for stage, st in (("palette", first), ("shape", second)):
                    runs.append(
                        {
                            "event_id": eid,
                            "pipeline_id": pipeline_id,
                            "stage": stage,
                            "state": st,
                            "attempts": 1,
                            "writes": 1 if st == "done" else 0,
                            "result": {"colours": ["#c81e5a"]} if st == "done" else None,
                            "finished_at": at if st in ("done", "failed", "skipped") else None,
                            "duration_ms": 3.0,
                            "error_type": error if st == "failed" else None,
                            "error": f"{error}: could not read the image" if st == "failed" else None,
                        }
                    )
            conn.execute(insert(Event), evs)
            conn.execute(insert(StageRun), runs)
        job_states, job_weights = list(JOB_STATES), list(JOB_STATES.values())
        for start in range(0, jobs, 5000):
            rows = []
            for i in range(start, min(start + 5000, jobs)):
                state = rng.choices(job_states, job_weights)[0]
                at = now - dt.timedelta(seconds=jobs - i)
                rows.append(
                    {
                        "id": uuid.uuid4().hex,
                        "model": "demo-iris",
                        "version": 1,
                        "state": state,
                        "input_kind": "inline",
                        "input_key": "",
                        "input_format": "json",
                        "options": {},
                        "total_rows": 100,
                        "rows_done": 100 if state == "succeeded" else 40,
                        "chunk_count": 1,
                        "chunks_done": 1 if state == "succeeded" else 0,
                        "chunks_failed": 1 if state == "failed" else 0,
                        "error_code": "retries-exhausted" if state == "failed" else None,
                        "error": "OSError: disk on fire" if state == "failed" else None,
                        "created_at": at,
                        "started_at": at,
                        "finished_at": at if state in ("succeeded", "failed", "cancelled") else None,
                        "updated_at": at,
                    }
                )
            conn.execute(insert(Job), rows)
    return time.perf_counter() - started


def _middle(client: TestClient, state: str) -> str:
    """The cursor (URL-quoted) of the middle event in ``state``, as the page before it links to it."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.engine.connect() as conn:
        total = conn.scalar(select(func.count()).where(Event.state == state)) or 0
        at, eid = conn.execute(
            select(Event.created_at, Event.id)
            .where(Event.state == state)
            .order_by(Event.created_at, Event.id)
            .offset(total // 2)
            .limit(1)
        ).one()
    return quote(event_cursor(at, eid))


def _measure(client: httpx.Client, path: str, repeats: int) -> dict[str, Any]:
    for _ in range(2):
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        resp = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, (path, resp.status_code)
    times.sort()
    return {
        "path": path,
        "renders": repeats,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[math.ceil(len(times) * 0.95) - 1], 1),
        "max_ms": round(times[-1], 1),
        "bytes": len(resp.content),
    }


def _served(settings: Settings, pages: list[tuple[str, str]], repeats: int) -> list[dict[str, Any]]:
    """The pages over HTTP from ``modelyard serve`` (with its worker) on the seeded database."""
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(settings.data_dir),
        "MODELYARD_DATABASE_URL": settings.database_url,
        "MODELYARD_ADMIN_KEY": KEY,
        "MODELYARD_LOG_TO_FILE": "false",
    }
    log = settings.data_dir.parent / "serve.log"
    with modelyard_serve(env, log) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/ui/login", data={"key": KEY, "next": "/ui/"}).status_code == 303
        return [{"page": name, **_measure(client, path, repeats)} for name, path in pages]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 events and 2,000 jobs")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--no-served", action="store_true", help="skip the HTTP pass")
    args = parser.parse_args()
    events = args.events or (10_000 if args.quick else 100_000)
    jobs = args.jobs or (2_000 if args.quick else 20_000)
    pages = [
        ("pipeline", "/ui/pipelines/images"),
        ("pipeline, failed events", "/ui/pipelines/images?state=failed"),
        # the middle of the complete events, reached through its cursor (keyset paging: no offset)
        ("pipeline, deep page", "/ui/pipelines/images?state=complete&before={middle}"),
        ("pipeline, deep page newer", "/ui/pipelines/images?state=complete&after={middle}"),
        ("pipelines list", "/ui/pipelines"),
        ("jobs list", "/ui/jobs"),
        ("jobs, failed", "/ui/jobs?state=failed"),
        ("jobs, deep page", f"/ui/jobs?offset={jobs // 2}"),
        ("overview", "/ui/"),
        ("queues", "/ui/queues"),
    ]
    load_before = os.getloadavg()  # other work on the machine shows in the figures: kept with them
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-dashboard-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=f"sqlite:///{Path(tmp) / 'modelyard.db'}",
            admin_key=KEY,
            log_to_file=False,
            access_log=False,
            worker=False,
            demo=True,
            _env_file=None,
        )
        with TestClient(create_app(settings), follow_redirects=False) as client:
            seeded = _seed(client, events, jobs)
            assert client.post("/ui/login", data={"key": KEY, "next": "/ui/"}).status_code == 303
            middle = _middle(client, "complete")
            pages = [(name, path.format(middle=middle)) for name, path in pages]
            results = [{"page": name, **_measure(client, path, args.repeats)} for name, path in pages]
        served = [] if args.no_served else _served(settings, pages, args.repeats)
    worst = max(r["p95_ms"] for r in results)
    worst_pipeline = max(r["p95_ms"] for r in results if r["path"].startswith("/ui/pipelines"))
    load = {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}
    shared = max(load["before"][0], load["after"][0]) > SHARED_LOAD
    print(
        f"dashboard pages, {events:,} events and {jobs:,} jobs (seeded in {seeded:.1f} s), "
        f"{args.repeats} renders each"
    )
    print(f"{'page':<26} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KiB':>7}  served p50 / p95 / max")
    by_page = {r["page"]: r for r in served}
    for r in results:
        times = f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}"
        there = by_page.get(r["page"])
        http = f"  {there['p50_ms']:.1f} / {there['p95_ms']:.1f} / {there['max_ms']:.1f}" if there else ""
        print(f"{r['page']:<26} {times} {r['bytes'] / 1024:>7.1f}{http}")
    if served:
        print(f"served over HTTP: worst p95 {max(r['p95_ms'] for r in served):.1f} ms")
    verdict = "met" if worst <= GOAL_P95_MS else "NOT met"
    print(f"worst p95 {worst:.1f} ms (goal <= {GOAL_P95_MS:.0f} ms): {verdict}")
    print(f"worst p95 of the pipeline pages {worst_pipeline:.1f} ms")
    print(f"load average (1/5/15 min) before {load['before']}, after {load['after']}", end="")
    print(": the machine was shared, figures are noisy" if shared else "")
    out = BENCH / "results" / ("dashboard-quick.json" if args.quick else "dashboard.json")
    out.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average": load,
                    "shared": shared,
                },
                "database": "sqlite (embedded default)",
                "events": events,
                "jobs": jobs,
                "repeats": args.repeats,
                "goal_p95_ms": GOAL_P95_MS,
                "worst_p95_ms": worst,
                "worst_pipeline_p95_ms": worst_pipeline,
                "met": worst <= GOAL_P95_MS,
                "pages": results,
                "served": served,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
