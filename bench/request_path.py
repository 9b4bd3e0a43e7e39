"""What a request costs others, measured in-process: the access log's cost per line, and how long decoding a
100,000-row prediction body stalls the event loop in a thread and in a decode process.

(a) access log: ``AccessLog.write`` called 20,000 times (best of 3): microseconds in the request path, and
process CPU per line including the background writer; (b) a ticker on the event loop sleeps 1 ms at a time
while a 1.8 MB ``{"rows": [...]}`` body is decoded (``offload.decode_rest``) in a thread, then in a
``DecodePool`` process: the worst gap between ticks is how long every other request would wait.

    .venv/bin/python bench/request_path.py        # -> bench/results/request_path.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from modelyard.access_log import AccessLog
from modelyard.serving.offload import DecodePool, decode_rest

RESULTS = Path(__file__).resolve().parent / "results" / "request_path.json"
LINES = 20_000
SIGNATURE = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]}
BODY = orjson.dumps({"rows": [[5.1, 3.5, 1.4, 0.2]] * 100_000})
FIELDS: dict[str, Any] = {
    "request_id": "0123456789abcdef",
    "key": "admin",
    "method": "POST",
    "route": "/v2/models/{name}/infer",
    "path": "/v2/models/m/infer",
    "status": 200,
    "duration_ms": 0.123,
}


def access_log() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        log = AccessLog(Path(folder))
        log.write(**FIELDS)  # the file is open and the writer started
        best = float("inf")
        cpu = time.process_time()
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(LINES):
                log.write(**FIELDS)
            best = min(best, (time.perf_counter() - start) / LINES)
        log.close()
        cpu = (time.process_time() - cpu) / (3 * LINES)
    return {"request_path_us": round(best * 1e6, 2), "cpu_with_writer_us": round(cpu * 1e6, 2)}


async def _worst_gap(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    start = time.perf_counter()
    await work()
    took = time.perf_counter() - start
    done = True
    await ticker
    return max(gaps), took


async def stalls() -> dict[str, Any]:
    pool = DecodePool(1)
    await pool.run(decode_rest, b'{"rows": [[1, 2, 3, 4]]}', SIGNATURE, {}, None)  # started
    ways: dict[str, Callable[[], Awaitable[Any]]] = {
        "thread": lambda: run_in_threadpool(decode_rest, BODY, SIGNATURE, {}, None),
        "process": lambda: pool.run(decode_rest, BODY, SIGNATURE, {}, None),
    }
    out: dict[str, Any] = {"body_bytes": len(BODY)}
    for name, work in ways.items():
        runs = [await _worst_gap(work) for _ in range(3)]
        out[name] = {
            "worst_gap_ms": [round(gap * 1000, 1) for gap, _ in runs],
            "decode_ms": [round(took * 1000, 1) for _, took in runs],
        }
    pool.close()
    return out


def main() -> int:
    report: dict[str, Any] = {
        "benchmark": "request_path",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "access_log": access_log(),
        "decode_stall": asyncio.run(stalls()),
    }
    log, stall = report["access_log"], report["decode_stall"]
    path_us, cpu_us = log["request_path_us"], log["cpu_with_writer_us"]
    print(f"access log: {path_us} us/line in the request path, {cpu_us} us CPU with the writer")
    for name in ("thread", "process"):
        gaps, took = stall[name]["worst_gap_ms"], stall[name]["decode_ms"]
        print(f"100,000-row body decoded in a {name}: event loop stalled {gaps} ms; decode {took} ms")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
