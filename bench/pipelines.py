"""Pipelines benchmark: end-to-end event throughput against raw DBOS, shared raw fetch, parallel stages.

1. **throughput** (embedded default: SQLite + local folder): N events (10,000 in a full pass) through a
   3-stage chain of trivial Python stages, submitted over HTTP in bulk (1,000 per request) to
   ``modelyard serve`` (API + in-process worker); events/s from the first submission to the last event
   finished, and p50/p95 event latency (submitted -> last stage done). Goal: >= 300 events/s.
2. **raw DBOS** (same machine, same SQLite setup): the design the goal rules out, one durable workflow per
   event with one step per stage, through a DBOS queue (worker concurrency 8, polling 0.05 s, WAL).
3. **shared fetch**: M images (1,000 in a full pass) behind a local HTTP server that answers after
   ``--fetch-delay-ms`` (50: a remote object store) through one pipeline of 3 inferrers (palette,
   aspect ratio, pHash), against the same 3 inferrers as 3 separate pipelines; every request counted.
   Goals: each image fetched exactly once; >= 2x faster.
4. **parallel stages**: a diamond (a -> {b, c} -> d, b and c sleeping 50 ms) against the same stages in
   a chain, one event at a time; the span of the middle (b and c) per event. Goal: ~1 stage time.

Prints a table and writes JSON to ``bench/results/pipelines.json`` (``pipelines-quick.json`` with --quick).

    .venv/bin/python bench/pipelines.py            # full pass (a few minutes; nothing else running)
    .venv/bin/python bench/pipelines.py --quick    # smoke run (1,000 events, 200 images)
    .venv/bin/python bench/pipelines.py --only throughput,raw-dbos
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO)]

from sqlalchemy import text  # noqa: E402

from modelyard.db import make_engine  # noqa: E402

KEY = "bench-admin-key-0123456789"
BIN = Path(sys.executable).parent / "modelyard"

CHAIN = {
    "name": "chain",
    "defaults": {"batch_size": 250, "concurrency": 2},
    "stages": {
        "one": {"type": "python", "callable": "pipeline_stages:first", "output_type": "json"},
        "two": {
            "type": "python",
            "callable": "pipeline_stages:plus_one",
            "inputs": ["one"],
            "output_type": "json",
        },
        "three": {
            "type": "python",
            "callable": "pipeline_stages:plus_one",
            "inputs": ["two"],
            "output_type": "json",
        },
    },
}
INFERRERS = {"palette": "palette", "aspect": "aspect_ratio", "hash": "phash"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    arr = np.asarray(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "max": round(float(arr.max()), 1),
    }


def wait(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Server:
    """``modelyard serve`` (API + in-process worker) on a fresh data dir; stopped on exit."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MODELYARD_DATA_DIR": str(data_dir),
            "MODELYARD_ADMIN_KEY": KEY,
            "MODELYARD_PORT": str(self.port),
            "MODELYARD_LOG_TO_FILE": "false",
            "MODELYARD_LOG_LEVEL": "WARNING",
            "MODELYARD_ALLOW_PRIVATE_URLS": "true",
            "MODELYARD_ACCESS_LOG": "false",
            "PYTHONPATH": str(BENCH),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def __enter__(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "serve"], env=self.env, stdout=log, stderr=log, start_new_session=True
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            return False

        wait(ready, 60, "the server")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        self.engine = make_engine(f"sqlite:///{self.data_dir / 'modelyard.db'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.engine.dispose()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def apply(self, spec: dict[str, Any]) -> None:
        resp = self.http.post("/api/v1/pipelines", json=spec)
        resp.raise_for_status()

    def submit(self, pipeline: str, events: list[dict[str, Any]], chunk: int = 1000) -> None:
        for i in range(0, len(events), chunk):
            resp = self.http.post(
                f"/api/v1/pipelines/{pipeline}/events", json={"events": events[i : i + chunk]}
            )
            resp.raise_for_status()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def ended(self, pipeline: str | None = None) -> int:
        where = "" if pipeline is None else "AND pipeline_id = (SELECT id FROM pipelines WHERE name = :p)"
        return int(
            self.scalar(
                f"SELECT COUNT(*) FROM pipeline_events WHERE state IN ('complete', 'failed') {where}",
                p=pipeline,
            )
        )


def parse_ts(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def event_latencies(server: Server, pipeline: str) -> tuple[list[float], dt.datetime, dt.datetime]:
    rows = server.rows(
        "SELECT e.created_at, e.finished_at FROM pipeline_events e JOIN pipelines p ON p.id = e.pipeline_id "
        "WHERE p.name = :p AND e.finished_at IS NOT NULL",
        p=pipeline,
    )
    created = [parse_ts(r[0]) for r in rows]
    finished = [parse_ts(r[1]) for r in rows]
    lat = [(f - c).total_seconds() * 1000 for c, f in zip(created, finished, strict=True)]
    return lat, min(created), max(finished)


# -- 1. throughput ------------------------------------------------------------------------------------


def throughput(work: Path, events: int) -> dict[str, Any]:
    data = work / "data"
    raw = data / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(events):
        (raw / f"{i}.bin").write_bytes(rng.bytes(32 + i % 32))
    with Server(data) as server:
        server.apply(CHAIN)
        body = [{"name": f"e{i}", "source": f"raw/{i}.bin"} for i in range(events)]
        start = time.perf_counter()
        server.submit("chain", body)
        submitted = time.perf_counter() - start
        wait(lambda: server.ended("chain") >= events, 600, "every event", every=0.2)
        wall = time.perf_counter() - start
        lat, first, last = event_latencies(server, "chain")
        failed = server.scalar("SELECT COUNT(*) FROM pipeline_events WHERE state != 'complete'")
        batches = server.scalar("SELECT COUNT(DISTINCT batch_id) FROM pipeline_stage_runs")
        outputs = sum(1 for _ in (data / "artifacts" / "pipelines" / "chain").rglob("*.json"))
    seconds = (last - first).total_seconds()
    return {
        "events": events,
        "stages": 3,
        "submit_seconds": round(submitted, 2),
        "seconds": round(seconds, 2),
        "wall_seconds": round(wall, 2),
        "events_per_s": round(events / seconds, 1),
        "latency_ms": quantiles(lat),
        "failed": int(failed),
        "batches": int(batches),
        "stage_runs_per_workflow": round(events * 4 / max(int(batches), 1), 1),
        "outputs_stored": outputs,
        "goal_events_per_s": 300,
    }


# -- 2. raw DBOS ---------------------------------------------------------------------------------------


def raw_dbos_child(work: Path, events: int) -> None:
    """Runs in its own process (DBOS is a process singleton): one workflow per event, a step per stage."""
    import sqlite3

    from dbos import DBOS, SetWorkflowID

    db = work / "dbos.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    raw = work / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for i in range(events):
        (raw / f"{i}.bin").write_bytes(rng.bytes(32 + i % 32))

    @DBOS.step(name="bench.first")
    def first(path: str) -> dict[str, int]:
        return {"n": len(Path(path).read_bytes())}

    @DBOS.step(name="bench.plus_one")
    def plus_one(value: dict[str, int]) -> dict[str, int]:
        return {"n": value["n"] + 1}

    @DBOS.workflow(name="bench.event")
    def event(path: str) -> dict[str, int]:
        return plus_one(plus_one(first(path)))

    DBOS(
        config={
            "name": "pipebench",
            "system_database_url": f"sqlite:///{db}",
            "application_version": "bench",
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.05,
        }
    )
    DBOS.launch()
    queue = DBOS.register_queue("events", worker_concurrency=8, polling_interval_sec=0.05)
    start = time.perf_counter()
    for i in range(events):
        with SetWorkflowID(f"e{i}"):
            queue.enqueue(event, str(raw / f"{i}.bin"))
    enqueued = time.perf_counter() - start
    engine = make_engine(f"sqlite:///{db}")

    def done() -> bool:
        with engine.connect() as conn:
            n = conn.execute(text("SELECT COUNT(*) FROM workflow_status WHERE status = 'SUCCESS'")).scalar()
        return int(n or 0) >= events

    wait(done, 3600, "raw DBOS workflows", every=0.1)
    wall = time.perf_counter() - start
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT created_at, updated_at FROM workflow_status WHERE status = 'SUCCESS'")
        ).all()
    DBOS.destroy(workflow_completion_timeout_sec=1)
    lat = [float(u - c) for c, u in rows]  # DBOS's SQLite timestamps: whole seconds here
    seconds = wall  # first enqueue to the last workflow seen done (polled every 0.1 s)
    print(
        json.dumps(
            {
                "events": events,
                "stages": 3,
                "enqueue_seconds": round(enqueued, 2),
                "seconds": round(seconds, 2),
                "events_per_s": round(events / seconds, 1),
                "latency_ms": quantiles(lat),
                "workflows": events,
            }
        )
    )


def raw_dbos(work: Path, events: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--raw-dbos-child", str(events), "--work", str(work)],
        capture_output=True,
        check=True,
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


# -- 3. shared fetch -----------------------------------------------------------------------------------


def shared_fetch(work: Path, images: int, delay_ms: float) -> dict[str, Any]:
    from tests.imageserver import ImageServer

    urls = [f"/img/{i}.png" for i in range(images)]
    results: dict[str, Any] = {"images": images, "fetch_delay_ms": delay_ms}
    with ImageServer(delay=delay_ms / 1000) as origin:
        with Server(work / "shared" / "data") as server:
            server.apply(
                {
                    "name": "shared",
                    "raw": "image",
                    "stages": {k: {"type": "inferrer", "inferrer": v} for k, v in INFERRERS.items()},
                }
            )
            start = time.perf_counter()
            server.submit("shared", [{"name": f"i{i}", "source": origin.url + u} for i, u in enumerate(urls)])
            wait(lambda: server.ended() >= images, 600, "the shared pipeline")
            shared_s = time.perf_counter() - start
            complete = server.scalar("SELECT COUNT(*) FROM pipeline_events WHERE state = 'complete'")
            recorded = server.scalar("SELECT SUM(fetches) FROM pipeline_raw_fetches")
        hits_shared = dict(origin.hits)
        origin.hits.clear()
        with Server(work / "separate" / "data") as server:
            for key, inferrer in INFERRERS.items():
                server.apply(
                    {
                        "name": f"only-{key}",
                        "raw": "image",
                        "stages": {key: {"type": "inferrer", "inferrer": inferrer}},
                    }
                )
            start = time.perf_counter()
            for key in INFERRERS:
                server.submit(
                    f"only-{key}", [{"name": f"i{i}", "source": origin.url + u} for i, u in enumerate(urls)]
                )
            wait(lambda: server.ended() >= 3 * images, 600, "the separate pipelines")
            separate_s = time.perf_counter() - start
        hits_separate = dict(origin.hits)
    results |= {
        "shared_seconds": round(shared_s, 2),
        "separate_seconds": round(separate_s, 2),
        "speedup": round(separate_s / shared_s, 2),
        "shared_complete": int(complete),
        "shared_requests": sum(hits_shared.values()),
        "shared_max_requests_per_image": max(hits_shared.values()),
        "shared_fetches_recorded": int(recorded or 0),
        "separate_requests": sum(hits_separate.values()),
        "goal_speedup": 2.0,
    }
    return results


# -- 4. parallel stages --------------------------------------------------------------------------------


def parallel(work: Path, events: int) -> dict[str, Any]:
    sleepy = {"type": "python", "callable": "pipeline_stages:sleep_50ms", "cache": False}
    diamond = {
        "name": "diamond",
        "stages": {
            "a": {"type": "python", "callable": "pipeline_stages:first"},
            "b": {**sleepy, "inputs": ["a"]},
            "c": {**sleepy, "inputs": ["a"]},
            "d": {"type": "python", "callable": "pipeline_stages:join", "inputs": ["b", "c"]},
        },
    }
    chain = {
        "name": "serial",
        "stages": {
            "a": {"type": "python", "callable": "pipeline_stages:first"},
            "b": {**sleepy, "inputs": ["a"]},
            "c": {**sleepy, "inputs": ["b"]},
            "d": {"type": "python", "callable": "pipeline_stages:join", "inputs": ["c"]},
        },
    }
    data = work / "data"
    (data / "raw").mkdir(parents=True)
    for i in range(events):
        (data / "raw" / f"{i}.bin").write_bytes(os.urandom(16))
    out: dict[str, Any] = {"events": events, "stage_ms": 50}
    with Server(data) as server:
        for spec in (diamond, chain):
            server.apply(spec)
            name = spec["name"]
            for i in range(events):  # one at a time: the latency of an event alone
                server.submit(name, [{"name": f"e{i}", "source": f"raw/{i}.bin"}])
                wait(lambda n=i + 1, p=name: server.ended(p) >= n, 60, f"{name} event", every=0.005)
            rows = server.rows(
                "SELECT r.event_id, r.stage, r.started_at, r.finished_at FROM pipeline_stage_runs r "
                "JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = :p AND r.stage IN ('b', 'c')",
                p=name,
            )
            spans: dict[str, list[dt.datetime]] = {}
            for eid, _stage, started, finished in rows:
                spans.setdefault(eid, []).extend([parse_ts(started), parse_ts(finished)])
            middle = [(max(v) - min(v)).total_seconds() * 1000 for v in spans.values()]
            lat, _, _ = event_latencies(server, name)
            out[name] = {"middle_ms": quantiles(middle), "event_latency_ms": quantiles(lat)}
    return out


# -- driver --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def table(results: dict[str, Any]) -> str:
    lines = []
    t, r = results.get("throughput"), results.get("raw_dbos")
    if t:
        lat = t["latency_ms"]
        lines.append(
            f"throughput  modelyard  {t['events']} events x 3 stages: {t['events_per_s']} events/s "
            f"(goal {t['goal_events_per_s']}), latency p50 {lat['p50']} ms p95 {lat['p95']} ms, "
            f"{t['batches']} batch workflows, {t['failed']} failed"
        )
    if r:
        lat = r["latency_ms"]
        lines.append(
            f"throughput  raw DBOS   {r['events']} events x 3 steps: {r['events_per_s']} events/s, "
            f"latency p50 {lat['p50']} ms p95 {lat['p95']} ms, {r['workflows']} workflows"
        )
    s = results.get("shared_fetch")
    if s:
        lines.append(
            f"shared fetch  {s['images']} images (origin {s['fetch_delay_ms']} ms): one pipeline "
            f"{s['shared_seconds']} s, {s['shared_requests']} requests "
            f"(max {s['shared_max_requests_per_image']}/image); three pipelines {s['separate_seconds']} s, "
            f"{s['separate_requests']} requests; speed-up {s['speedup']}x (goal 2x)"
        )
    p = results.get("parallel")
    if p:
        d, c = p["diamond"], p["serial"]
        lines.append(
            f"parallel    two 50 ms stages, middle span p50: diamond {d['middle_ms']['p50']} ms, "
            f"chain {c['middle_ms']['p50']} ms; event latency p50 diamond {d['event_latency_ms']['p50']} ms, "
            f"chain {c['event_latency_ms']['p50']} ms"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--events", type=int, help="events for the throughput runs (default 10,000; quick 1,000)"
    )
    parser.add_argument(
        "--images", type=int, help="images for the shared-fetch run (default 1,000; quick 200)"
    )
    parser.add_argument("--fetch-delay-ms", type=float, default=50.0, help="origin answer delay")
    parser.add_argument("--only", help="comma-separated: throughput, raw-dbos, shared-fetch, parallel")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    parser.add_argument("--raw-dbos-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_dbos_child:
        raw_dbos_child(args.work, args.raw_dbos_child)
        return
    events = args.events or (1000 if args.quick else 10_000)
    images = args.images or (200 if args.quick else 1000)
    only = set((args.only or "throughput,raw-dbos,shared-fetch,parallel").split(","))
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine(),
        "quick": args.quick,
    }
    runs: list[tuple[str, str, Callable[[Path], dict[str, Any]]]] = [
        ("throughput", "throughput", lambda w: throughput(w, events)),
        ("raw-dbos", "raw_dbos", lambda w: raw_dbos(w, events)),
        ("shared-fetch", "shared_fetch", lambda w: shared_fetch(w, images, args.fetch_delay_ms)),
        ("parallel", "parallel", lambda w: parallel(w, 10 if args.quick else 30)),
    ]
    for flag, key, run in runs:
        if flag not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"pipebench-{flag}-") as tmp:
            print(f"running {flag}...", file=sys.stderr, flush=True)
            results[key] = run(Path(tmp))
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = args.out or BENCH / "results" / ("pipelines-quick.json" if args.quick else "pipelines.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
