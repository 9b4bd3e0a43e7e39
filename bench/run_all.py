"""Run every benchmark in bench/ one after another, each as its own subprocess, and print their tables.

    .venv/bin/python bench/run_all.py              # full passes (what `make bench` runs)
    .venv/bin/python bench/run_all.py --quick      # smoke runs
    .venv/bin/python bench/run_all.py --only serving,jobs

The benchmarks (``serving.py``, ``jobs.py``, ``pipelines.py``, ``analysis.py``, in that order, those that
exist) print their own tables and write their own JSON under ``bench/results/``; their output is passed
through as it comes. They run strictly one at a time, since each needs the machine to itself. The exit
status is 0 only when every benchmark exited 0; a summary at the end lists each one's exit status
and duration.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = ("serving", "jobs", "pipelines", "analysis")


def present() -> list[str]:
    """The benchmarks of ``BENCHMARKS`` that exist in bench/."""
    return [name for name in BENCHMARKS if (BENCH / f"{name}.py").is_file()]


def run(name: str, extra: list[str]) -> tuple[int, float]:
    """Run ``bench/<name>.py`` with ``extra`` arguments; its output goes straight to ours."""
    argv = [sys.executable, str(BENCH / f"{name}.py"), *extra]
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=BENCH.parent)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # The benchmark got the Ctrl-C too (same process group) and stops its own servers; wait for it.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return code, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke runs)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = present()
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    missing = [n for n in only if n not in names]
    if missing:
        print(f"not in bench/ (skipped): {', '.join(missing)}", flush=True)
    names = [n for n in names if not only or n in only]
    if not names:
        print("no benchmark to run", flush=True)
        return 1
    extra = ["--quick"] if args.quick else []
    outcomes: list[tuple[str, int, float]] = []
    for name in names:
        code, seconds = run(name, extra)
        outcomes.append((name, code, seconds))
    print("\n=== summary", flush=True)
    for name, code, seconds in outcomes:
        print(f"  {name:<10} {'ok' if code == 0 else f'FAILED (exit {code})':<16} {seconds:7.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
