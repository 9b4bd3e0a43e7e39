"""Where a modelyard request spends its time: py-spy samples the server while the load generator drives it.

Starts modelyard pinned to core 0 (as ``serving.py`` does), registers the logreg test model, drives one
route with the load generator on core 1 (32 connections by default), and has py-spy (installed on demand
in ``bench/.envs/tools``) sample the server process for the same window. Prints the top frames by self
time and by inclusive time, and the share of samples in a few buckets (HTTP/ASGI, V2 decode/encode,
inference, auth, metrics...). Writes the collapsed stacks (flamegraph input) and the summary JSON to
``bench/results/``.

    .venv/bin/python bench/profile_serving.py                      # V2 JSON, 32 connections, 10 s
    .venv/bin/python bench/profile_serving.py --route rest -c 1    # REST, sequential
    .venv/bin/python bench/profile_serving.py --gil                # only samples holding the GIL
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
import peers  # noqa: E402

import serving  # noqa: E402

TOOLS = peers.PeerEnv("tools", ("py-spy==0.4.3",), "import sys")

# (bucket, substrings of a frame "function (file:line)"); the first match from the leaf up wins.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    (
        "onnxruntime session.run",
        ("onnxruntime", "_timed_run", "timed (", "LoadedModel.run", "run (modelyard/serving/runtime"),
    ),
    ("V2 decode", ("decode_request", "_tensor_header", "_tensor_data", "_loads_header", "_decode_requested")),
    ("V2 encode", ("encode_response", "_to_json", "_to_wire")),
    ("REST decode/encode", ("decode_inputs", "rows_to_array", "encode_outputs")),
    ("input checks", ("check_inputs",)),
    (
        "modelyard glue (fast path, infer_core, predict)",
        ("serving/fastpath.py", "serving/v2_api.py", "serving/service.py"),
    ),
    ("auth", ("auth.py", "require (", "scopes_for")),
    ("metrics", ("prometheus_client", "MetricsMiddleware", "metrics.py")),
    ("batching", ("batching.py",)),
    ("thread hand-off", ("run_in_executor", "concurrent/futures", "threading.py", "queue.py")),
    ("model resolve", ("resolve (", "resolve_sync", "sqlalchemy")),
    ("logging", ("logging/", "logs.py")),
    ("Starlette/FastAPI (middleware, routing)", ("fastapi/", "starlette/")),
    ("uvicorn/httptools", ("uvicorn/", "httptools")),
    ("asyncio/uvloop", ("asyncio/", "uvloop")),
]


def bucket_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in BUCKETS:
            if any(n in frame for n in needles):
                return name
    return "other"


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``: one entry per function, not per line."""
    head, sep, tail = frame.rpartition(":")
    return f"{head})" if sep and tail.rstrip(")").isdigit() else frame


def summarize(collapsed: Path, top: int) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack_text.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        buckets[bucket_of(frames)] += count

    def pct(c: int) -> float:
        return round(100.0 * c / total, 1) if total else 0.0

    return {
        "samples": total,
        "buckets_pct": {k: pct(v) for k, v in buckets.most_common()},
        "top_self_pct": [[f, pct(c)] for f, c in self_time.most_common(top)],
        "top_inclusive_pct": [[f, pct(c)] for f, c in inclusive.most_common(top * 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--route", choices=["v2", "rest"], default="v2")
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="only sample threads holding the GIL")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    peers.ensure_env(TOOLS)
    out_dir = BENCH / "results"
    out_dir.mkdir(parents=True, exist_ok=True)

    with (
        tempfile.TemporaryDirectory(prefix="modelyard-profile-") as tmpdir,
        serving.interrupts_as_exceptions(),
    ):
        tmp = Path(tmpdir)
        (tmp / "logs").mkdir()
        procs = serving.Processes(tmp / "logs")
        try:
            models = serving.build_models(tmp)
            row = np.random.default_rng(1).normal(size=20).astype(np.float32).round(4)
            ctx = serving.Ctx(serving.FULL, procs, tmp, models, row, 0, print)
            server = serving.start_modelyard(ctx, "modelyard")
            from modelyard.client import Client

            with Client(server.url, api_key=server.key) as client:
                client.push_model(models["logreg"], name="logreg", metadata={})
            if args.route == "v2":
                url, body = server.url + "/v2/models/logreg/infer", serving.v2_json_body("X", row[None, :])
            else:
                url = server.url + "/api/v1/models/logreg/predict"
                body = json.dumps({"rows": [row.tolist()]}).encode()
            headers = {**serving.JSON_HEADERS, **server.auth()}
            body_file = ctx.write("body.json", body)
            # warm up (and let modelyard measure its runs) before sampling
            serving.loadgen(
                ctx,
                serving.http_args(
                    url,
                    body_file,
                    headers,
                    concurrency=args.concurrency,
                    seconds=2,
                    requests=10_000_000,
                    warmup=0,
                    pid=None,
                ),
            )
            collapsed = out_dir / f"profile-{args.route}-c{args.concurrency}.collapsed.txt"
            spy_argv = [
                str(TOOLS.bin("py-spy")),
                "record",
                "--pid",
                str(server.pid),
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--duration",
                str(int(args.duration) + 2),
                "--nonblocking",
                "--output",
                str(collapsed),
            ]
            if args.gil:
                spy_argv.append("--gil")
            quiet = serving.wait_for_quiet(120, 0.3, print)
            spy = procs.start("py-spy", spy_argv, cpu=serving.CLIENT_CPU)
            time.sleep(1.0)
            result = serving.loadgen(
                ctx,
                serving.http_args(
                    url,
                    body_file,
                    headers,
                    concurrency=args.concurrency,
                    seconds=args.duration,
                    requests=10_000_000,
                    warmup=0,
                    pid=server.pid,
                ),
            )
            spy.wait(args.duration + 30)
        finally:
            procs.stop_all()

    summary = {
        "route": args.route,
        "concurrency": args.concurrency,
        "gil_only": args.gil,
        "load": result,
        "machine_before": quiet,
        **summarize(collapsed, args.top),
    }
    (out_dir / f"profile-{args.route}-c{args.concurrency}.json").write_text(
        json.dumps(summary, indent=2) + "\n"
    )
    print(
        f"{result['requests']} requests, {result['rps']:.0f} req/s under py-spy "
        f"({summary['samples']} samples)"
    )
    print("\nbuckets (innermost matching frame):")
    for name, share in summary["buckets_pct"].items():
        print(f"  {share:5.1f}%  {name}")
    print("\ntop self time:")
    for frame, share in summary["top_self_pct"]:
        print(f"  {share:5.1f}%  {frame}")
    print("\ntop inclusive time:")
    for frame, share in summary["top_inclusive_pct"]:
        print(f"  {share:5.1f}%  {frame}")
    print(f"\ncollapsed stacks: {collapsed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
