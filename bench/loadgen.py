"""Load generator of the serving benchmark: aiohttp on uvloop, keep-alive, N concurrent connections.

Each of N workers owns one keep-alive connection (the connector's limit is N) and sends the same
pre-encoded body back to back until the duration or the request budget runs out, timing every request
from send to the last byte of the answer. A warm-up phase on the same connections comes first and is
not counted. Reports median/p90/p99 latency, requests/s, errors, and the CPU share used by the load
generator itself, (with ``--pid``) by the server's process tree, and by anything else on the machine
(other processes, kernel network work) during the measured window: a client near 100% of its core is the
bottleneck, not the server; a large ``other_cpu`` means something else competed for the cores.

Modes:
  http    the load generator proper (any server that speaks HTTP/1.1)
  triton  modelyard (or any V2 server) through the stock ``tritonclient.http`` client, one connection,
          one request at a time; each call builds its InferInput and decodes the result like a user would
  inproc  ``session.run`` of an ONNX model in this process: the no-server baseline

Examples::

    python bench/loadgen.py http http://127.0.0.1:8000/v2/models/logreg/infer --body-file req.json \\
        -H 'Content-Type: application/json' -H 'Authorization: Bearer KEY' -c 32 -d 10 --warmup 2
    python bench/loadgen.py inproc --model logreg.onnx --feeds feeds.npz -d 5

Bounded: every run stops at ``--duration`` seconds or ``--requests`` requests, whichever comes first.
Loopback targets only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

LOOPBACK = ("127.", "localhost", "[::1]", "::1")
MAX_REQUESTS = 10_000_000
_CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadResult:
    """What one measured phase produced. Latencies in milliseconds; CPU as a share of one core."""

    requests: int
    errors: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float]
    concurrency: int
    client_cpu: float
    server_cpu: float | None = None
    machine_cpu: float | None = None
    other_cpu: float | None = None
    server_us_per_request: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    error_sample: str | None = None

    def __post_init__(self) -> None:
        if self.server_cpu is not None and self.rps > 0:
            self.server_us_per_request = round(self.server_cpu / self.rps * 1e6, 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(latencies_s: Sequence[float]) -> dict[str, float]:
    """median, p90, p99, mean, min, max in ms (zeros for an empty list)."""
    if not latencies_s:
        return {k: 0.0 for k in ("median", "p90", "p99", "mean", "min", "max")}
    a = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "median": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


# ------------------------------------------------------------------------------------------------ CPU


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK


def process_tree(roots: Sequence[int]) -> list[int]:
    """The given pids and all their descendants (e.g. BentoML's and taskset's children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out: list[int] = []
    todo = list(roots)
    while todo and len(out) < 10_000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLK


class CpuProbe:
    """CPU seconds of a process tree between ``start()`` and ``stop()`` (None when no pids were given),
    and of the whole machine, so that CPU taken by anything else during a measurement shows."""

    def __init__(self, pids: Sequence[int]):
        self.roots = list(pids)
        self._pids: list[int] = []
        self._start = 0.0
        self._machine = 0.0

    def _total(self) -> float:
        return sum(st[1] for pid in self._pids if (st := _stat(pid)) is not None)

    def start(self) -> None:
        self._machine = machine_busy_seconds()
        if self.roots:
            self._pids = process_tree(self.roots)
            self._start = self._total()

    def stop(self, wall_s: float) -> float | None:
        if not self.roots or wall_s <= 0:
            return None
        return round((self._total() - self._start) / wall_s, 3)

    def machine(self, wall_s: float) -> float:
        """Busy cores, on average, over the window (2.0 = both cores fully busy)."""
        return round((machine_busy_seconds() - self._machine) / wall_s, 3) if wall_s > 0 else 0.0


def _other(machine_cpu: float, client_cpu: float, server_cpu: float | None) -> float:
    """CPU (in cores) busy with neither the client nor the server: other processes and kernel work."""
    return round(max(0.0, machine_cpu - client_cpu - (server_cpu or 0.0)), 3)


# ----------------------------------------------------------------------------------------------- HTTP


def check_loopback(url: str) -> None:
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    if not (host.startswith(LOOPBACK[0]) or host in ("localhost", "::1")):
        raise SystemExit(f"refusing to load {host!r}: the benchmark only targets loopback addresses")


async def run_http(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    max_requests: int = MAX_REQUESTS,
    warmup: float = 0.0,
    server_pids: Sequence[int] = (),
    method: str = "POST",
    expect_status: int = 200,
) -> LoadResult:
    """Drive ``url`` with ``concurrency`` keep-alive connections; measure after ``warmup`` seconds."""
    import aiohttp
    from yarl import URL

    check_loopback(url)
    target = URL(url, encoded=True)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    error_sample: str | None = None

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",), auto_decompress=False
    ) as session:
        request = session._request  # the public verbs only add a context manager around it

        async def worker(stop_at: float, budget: list[int], record: bool) -> None:
            nonlocal errors, error_sample
            perf = time.perf_counter
            while budget[0] > 0:
                t0 = perf()
                if t0 >= stop_at:
                    return
                budget[0] -= 1
                try:
                    resp = await request(method, target, data=body, headers=headers)
                    await resp.read()
                    status = resp.status
                    resp.release()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    status = -1
                    if record and error_sample is None:
                        error_sample = f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(0.005)  # no hot spin against a dead server
                t1 = perf()
                if record:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == expect_status:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1
                        if error_sample is None and status != -1:
                            error_sample = f"HTTP {status}"

        async def phase(seconds: float, budget: int, record: bool) -> float:
            left = [budget]
            start = time.perf_counter()
            stop_at = start + seconds
            await asyncio.gather(*(worker(stop_at, left, record) for _ in range(concurrency)))
            return time.perf_counter() - start

        if warmup > 0:
            await phase(warmup, MAX_REQUESTS, record=False)
        probe = CpuProbe(server_pids)
        probe.start()
        cpu0 = time.process_time()
        wall = await phase(duration, max_requests, record=True)
        client_cpu = (time.process_time() - cpu0) / wall
        server_cpu = probe.stop(wall)
        machine_cpu = probe.machine(wall)

    done = len(latencies) + errors
    return LoadResult(
        requests=done,
        errors=errors,
        duration_s=round(wall, 3),
        rps=round(len(latencies) / wall, 1),
        latency_ms=summarize(latencies),
        concurrency=concurrency,
        client_cpu=round(client_cpu, 3),
        server_cpu=server_cpu,
        machine_cpu=machine_cpu,
        other_cpu=_other(machine_cpu, client_cpu, server_cpu),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        error_sample=error_sample,
    )


# --------------------------------------------------------------------------------- sequential callables


def run_calls(
    call: Callable[[], Any],
    *,
    duration: float,
    max_requests: int,
    warmup: float,
    server_pids: Sequence[int] = (),
) -> LoadResult:
    """Call ``call`` back to back (warm-up first), timing each; exceptions count as errors."""
    perf = time.perf_counter
    stop = perf() + warmup
    for _ in range(MAX_REQUESTS):
        if perf() >= stop:
            break
        call()
    latencies: list[float] = []
    errors = 0
    sample: str | None = None
    probe = CpuProbe(server_pids)
    probe.start()
    cpu0 = time.process_time()
    start = perf()
    stop = start + duration
    for _ in range(max_requests):
        t0 = perf()
        if t0 >= stop:
            break
        try:
            call()
        except Exception as exc:
            errors += 1
            sample = sample or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append(perf() - t0)
    wall = perf() - start
    client_cpu = (time.process_time() - cpu0) / wall
    server_cpu = probe.stop(wall)
    machine_cpu = probe.machine(wall)
    return LoadResult(
        requests=len(latencies) + errors,
        errors=errors,
        duration_s=round(wall, 3),
        rps=round(len(latencies) / wall, 1),
        latency_ms=summarize(latencies),
        concurrency=1,
        client_cpu=round(client_cpu, 3),
        server_cpu=server_cpu,
        machine_cpu=machine_cpu,
        other_cpu=_other(machine_cpu, client_cpu, server_cpu),
        error_sample=sample,
    )


def triton_call(
    hostport: str, model: str, feeds: dict[str, np.ndarray], headers: dict[str, str]
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """One stock-tritonclient inference per call (binary inputs and outputs, the client's defaults)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    check_loopback(hostport)
    client = httpclient.InferenceServerClient(
        url=hostport, concurrency=1, connection_timeout=30, network_timeout=30
    )

    def call() -> Any:
        inputs = []
        for name, arr in feeds.items():
            inp = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        result = client.infer(model, inputs, headers=headers)
        return [result.as_numpy(o["name"]) for o in result.get_response()["outputs"]]

    return call, client.close


def inproc_call(model: Path, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """``session.run`` of ``model`` with one intra-op thread, as modelyard configures its sessions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    def call() -> Any:
        return session.run(None, feeds)

    return call


# ------------------------------------------------------------------------------------------------ CLI


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep:
            raise SystemExit(f"header {pair!r} is not 'Name: value'")
        out[key.strip()] = value.strip()
    return out


def _feeds(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds (default 10)")
    common.add_argument("-n", "--requests", type=int, default=MAX_REQUESTS, help="request budget")
    common.add_argument("--warmup", type=float, default=1.0, help="uncounted warm-up seconds (default 1)")
    common.add_argument("--pid", type=int, action="append", default=[], help="server pid to measure CPU of")
    common.add_argument("--json", action="store_true", help="print the result as one JSON object")

    http = sub.add_parser("http", parents=[common], help="HTTP load")
    http.add_argument("url")
    http.add_argument("-c", "--concurrency", type=int, default=32)
    http.add_argument("-X", "--method", default="POST")
    http.add_argument("-H", "--header", action="append", default=[])
    http.add_argument("--body-file", type=Path)
    http.add_argument("--body", default="")
    http.add_argument("--expect-status", type=int, default=200)

    triton = sub.add_parser("triton", parents=[common], help="stock tritonclient.http, one connection")
    triton.add_argument("hostport", help="e.g. 127.0.0.1:8000")
    triton.add_argument("--model", required=True)
    triton.add_argument("--feeds", type=Path, required=True, help=".npz of input name -> array")
    triton.add_argument("-H", "--header", action="append", default=[])

    inproc = sub.add_parser("inproc", parents=[common], help="session.run in this process")
    inproc.add_argument("--model", type=Path, required=True)
    inproc.add_argument("--feeds", type=Path, required=True, help=".npz of input name -> array")

    args = parser.parse_args(argv)
    if args.mode == "http":
        body = args.body_file.read_bytes() if args.body_file else args.body.encode()
        result = _run_async(
            run_http(
                args.url,
                body,
                _headers(args.header),
                concurrency=args.concurrency,
                duration=args.duration,
                max_requests=args.requests,
                warmup=args.warmup,
                server_pids=args.pid,
                method=args.method,
                expect_status=args.expect_status,
            )
        )
    elif args.mode == "triton":
        call, close = triton_call(args.hostport, args.model, _feeds(args.feeds), _headers(args.header))
        try:
            result = run_calls(
                call,
                duration=args.duration,
                max_requests=args.requests,
                warmup=args.warmup,
                server_pids=args.pid,
            )
        finally:
            close()
    else:
        call = inproc_call(args.model, _feeds(args.feeds))
        result = run_calls(call, duration=args.duration, max_requests=args.requests, warmup=args.warmup)

    if args.json:
        print(json.dumps(result.to_json()))
    else:
        lat = result.latency_ms
        print(
            f"{result.requests} requests in {result.duration_s:.2f}s: {result.rps:.0f} req/s, "
            f"{result.errors} errors; latency ms median {lat['median']:.3f} p90 {lat['p90']:.3f} "
            f"p99 {lat['p99']:.3f}; client CPU {result.client_cpu:.0%}"
            + (f", server CPU {result.server_cpu:.0%}" if result.server_cpu is not None else "")
            + f", other CPU {result.other_cpu or 0:.0%}"
        )
        if result.error_sample:
            print(f"first error: {result.error_sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
