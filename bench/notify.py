"""Notifications benchmark: signed webhook deliveries through a worker, on the embedded default.

A worker (DBOS launched in this process, SQLite + local folder) fans out N topic events (appended to the
event log as the geo part appends them, one transaction each, as fast as they come) to S webhook
subscriptions of one model, all pointing at a local receiver (a threaded ``http.server`` answering 204).
Measured: deliveries per second from the first event appended to the last delivery received, and the
latency of each delivery (event appended -> request received), p50 / p99. Each subscriber's requests are
checked to arrive in event order, and exactly once.

Prints a table and writes JSON to ``bench/results/notify.json`` (``notify-quick.json`` with --quick).

    .venv/bin/python bench/notify.py            # 2,000 events x 4 subscribers
    .venv/bin/python bench/notify.py --quick    # 300 events x 2 subscribers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "src")]

from modelyard.app import build_context  # noqa: E402
from modelyard.durable import Durable, log  # noqa: E402
from modelyard.notify import dispatch, service  # noqa: E402
from modelyard.notify.schemas import WebhookCreate  # noqa: E402
from modelyard.registry import service as registry  # noqa: E402
from modelyard.registry.schemas import ModelCreate  # noqa: E402
from modelyard.settings import Settings  # noqa: E402


class Receiver:
    """Records (subscriber path, event id, arrival time) of every POST; answers 204."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.perf_counter()
                with receiver.lock:
                    receiver.got.append((self.path, int(self.headers["X-Modelyard-Event-Id"]), now))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.got)


def run(tmp: Path, events: int, subscribers: int) -> dict[str, Any]:
    settings = Settings(
        data_dir=tmp / "data",
        admin_key="bench-admin-key-0123456789",
        log_to_file=False,
        access_log=False,
        allow_private_urls=True,
        _env_file=None,  # type: ignore[call-arg]
    )
    ctx = build_context(settings)
    receiver = Receiver()
    with ctx.uow() as session:
        registry.create_model(session=session, data=ModelCreate(name="roofs"))
        for i in range(subscribers):
            hook = WebhookCreate(kind="webhook", url=f"{receiver.url}/s{i}", events=[])
            service.create_subscription(session=session, settings=settings, model="roofs", data=hook)
    durable = Durable(ctx, executor_id="bench", queues=[dispatch.FANOUT_QUEUE, dispatch.DELIVERY_QUEUE])
    durable.launch()
    appended: dict[int, float] = {}
    try:
        start = time.perf_counter()
        for i in range(events):
            with ctx.uow() as session:
                log.append(session, "geo.run.succeeded", {"model": "roofs", "run_id": f"r{i}"}, f"r{i}")
                session.flush()
                event_id = log.head(session)
            appended[event_id] = time.perf_counter()
        expected = events * subscribers
        deadline = time.monotonic() + 600
        while receiver.count() < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        took = max(t for _, _, t in receiver.got) - start
    finally:
        durable.shutdown()
        ctx.close()
        receiver.server.shutdown()
    got = receiver.got
    latencies = np.array([(t - appended[e]) * 1000 for _, e, t in got])
    by_sub: dict[str, list[int]] = {}
    for path, event_id, _ in sorted(got, key=lambda g: g[2]):
        by_sub.setdefault(path, []).append(event_id)
    in_order = all(ids == sorted(ids) for ids in by_sub.values())
    once = all(len(ids) == len(set(ids)) == events for ids in by_sub.values())
    return {
        "events": events,
        "subscribers": subscribers,
        "deliveries": len(got),
        "seconds": round(took, 2),
        "deliveries_per_second": round(len(got) / took, 1),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "in_order": in_order,
        "exactly_once": once,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--subscribers", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    events = args.events or (300 if args.quick else 2000)
    subscribers = args.subscribers or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), events, subscribers)
    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "webhooks": result,
    }
    out = args.out or BENCH / "results" / ("notify-quick.json" if args.quick else "notify.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    r = result
    print("| events x subscribers | deliveries/s | latency p50 | latency p99 | in order | exactly once |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {r['events']} x {r['subscribers']} | {r['deliveries_per_second']} | {r['latency_ms_p50']} ms "
        f"| {r['latency_ms_p99']} ms | {r['in_order']} | {r['exactly_once']} |"
    )


if __name__ == "__main__":
    main()
