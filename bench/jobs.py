"""Jobs benchmark: batch throughput against a raw onnxruntime loop, worker memory, tiny-job overhead,
and scale-out on PostgreSQL.

1. **throughput** (embedded default: SQLite + local folder): one job over N rows x 20 features (1,000,000
   in a full pass) through the logreg model, run by one ``modelyard worker`` process with the server's
   default chunking; measured against a plain loop of raw onnxruntime over the same chunks (the job's
   own spans, read back) of the same ``.npy`` file, one pass of it after each run of the job so both
   see the same machine (``raw``: ``session.run`` on each chunk; ``raw_io``: the loop a person would
   write instead of a job, reading each chunk and writing its output as Parquet too). The goal is
   judged against ``raw_io``: both sides then do the same work, and the job's extra is its
   bookkeeping. Medians of 7 warm runs each. The worker's peak RSS (VmHWM) is its memory.
2. **tiny jobs** (embedded default): ``modelyard serve`` (API + in-process worker); M jobs of one inline
   row each (2,000 in a full pass) submitted over HTTP by 4 clients; jobs/s from the first submission to
   the last job finished, per-job overhead, and per-job latency (created -> finished).
3. **scale-out** (PostgreSQL at 127.0.0.1:5432): the throughput job with 1, then 2 worker processes
   (each ``--concurrency`` chunks at a time, 1 by default so a worker is one core); the speed-up.

Prints a table and writes JSON to ``bench/results/jobs.json`` (``jobs-quick.json`` with ``--quick``).

    .venv/bin/python bench/jobs.py            # full pass (several minutes; nothing else running)
    .venv/bin/python bench/jobs.py --quick    # smoke run (100k rows, 200 tiny jobs)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from sqlalchemy import select

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "tests")]

import onnx_models  # noqa: E402  (tests/onnx_models.py: the test models, built on the spot)
from modelyard.app import build_context  # noqa: E402
from modelyard.context import AppContext  # noqa: E402
from modelyard.durable import Worker  # noqa: E402
from modelyard.jobs import outputs, service, submission  # noqa: E402
from modelyard.jobs.models import Job, JobChunk  # noqa: E402
from modelyard.jobs.schemas import JobCreate, JobOptions  # noqa: E402
from modelyard.registry import service as registry  # noqa: E402
from modelyard.registry.schemas import ModelCreate  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

BIN = Path(sys.executable).with_name("modelyard")
KEY = "bench-admin-key-" + uuid.uuid4().hex
WARM_RUNS = 7
SERVER_CORE, CLIENT_CORE = 0, 1


def pinned(core: int) -> list[str]:
    """``taskset -c core`` where there are cores to spare (it execs: the pid is the server's)."""
    return (
        ["taskset", "-c", str(core)] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
    )  # runs of the throughput job (and of the raw loops) whose median is reported


GOALS = {"throughput_vs_raw_io": 0.9, "worker_peak_mb": 500, "tiny_jobs_per_s": 100}


def wait_for(probe: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return found


def write_input(path: Path, rows: int) -> Path:
    """An .npy of ``rows`` x 20 float32, written block by block."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 20))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        stop = min(start + 100_000, rows)
        arr[start:stop] = rng.normal(size=(stop - start, 20))
    arr.flush()
    del arr
    return path


class RawLoops:
    """A plain loop of raw onnxruntime over the job's chunks (its own spans, read back), compute only and
    with I/O; each pass is timed, and passes are interleaved with the job's runs so both see the same
    machine."""

    def __init__(self, model: Path, data: Path, out_dir: Path) -> None:
        self.sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.arr = np.load(data, mmap_mode="r")
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.times: dict[str, list[float]] = {"raw_s": [], "raw_io_s": []}

    def compute(self, spans: list[tuple[int, int]]) -> float:
        chunks = [np.ascontiguousarray(self.arr[a:b]) for a, b in spans]
        start = time.perf_counter()
        for x in chunks:
            self.sess.run(None, {"X": x})
        return time.perf_counter() - start

    def with_io(self, spans: list[tuple[int, int]]) -> float:
        start = time.perf_counter()
        for i, (a, b) in enumerate(spans):
            label, proba = self.sess.run(None, {"X": np.ascontiguousarray(self.arr[a:b])})
            table = outputs.chunk_table(np.arange(a, b), {"label": label, "probabilities": proba})
            (self.out_dir / f"{i:06d}.parquet").write_bytes(outputs.table_bytes(table))  # the job's encoding
        return time.perf_counter() - start

    def one_pass(self, spans: list[tuple[int, int]], *, record: bool = True) -> None:
        raw, raw_io = self.compute(spans), self.with_io(spans)
        if record:
            self.times["raw_s"].append(raw)
            self.times["raw_io_s"].append(raw_io)

    def medians(self) -> dict[str, float]:
        return {name: float(np.median(found)) for name, found in self.times.items()}

    def hot(self, spans: list[tuple[int, int]]) -> float:
        """The loop with I/O run back to back (its allocator and caches hot from the pass before): a
        figure beside the judged one, for a reader who asks how fast the loop can go at best."""
        return float(np.median([self.with_io(spans) for _ in range(WARM_RUNS)]))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started inside are stopped (SIGTERM, then SIGKILL) when the block ends, also on errors."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MODELYARD_DATA_DIR": str(settings.data_dir),
        "MODELYARD_DATABASE_URL": settings.database_url,
        "MODELYARD_LOG_TO_FILE": "false",
        "MODELYARD_LOG_LEVEL": "WARNING",
        "MODELYARD_ACCESS_LOG": "false",
        **extra,
    }


def context(data_dir: Path, database_url: str = "") -> AppContext:
    settings = Settings(
        data_dir=data_dir, database_url=database_url, worker=False, log_to_file=False, _env_file=None
    )  # type: ignore[call-arg]
    return build_context(settings)


def register(ctx: AppContext, model: Path) -> None:
    with ctx.uow() as session:
        registry.create_model(session=session, data=ModelCreate(name="logreg"))
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        registry.add_version(session=session, storage=ctx.storage, name="logreg", path=model, sha256=sha)


def run_job(
    ctx: AppContext,
    procs: list[subprocess.Popen[bytes]],
    workers: int,
    concurrency: int | None,
    alongside: RawLoops | None = None,
) -> dict[str, Any]:
    """Start ``workers`` worker processes, run one job over ``in/rows.npy``, return its timings (with
    ``alongside``: a pass of the raw loops over the job's chunks after each run of the job)."""
    log = ctx.settings.data_dir.parent / "workers.log"
    extra = {"MODELYARD_WORKER_CONCURRENCY": str(concurrency)} if concurrency else {}
    mine = []
    for i in range(workers):
        with log.open("ab") as f:
            proc = subprocess.Popen(
                [str(BIN), "worker", "--executor-id", f"bench-{i}-{uuid.uuid4().hex[:6]}"],
                env=env_for(ctx.settings, **extra),
                stdout=f,
                stderr=f,
            )
        procs.append(proc)
        mine.append(proc)

    def alive() -> bool:
        with ctx.uow() as session:
            pids = set(session.scalars(select(Worker.pid).where(Worker.state == "alive")))
        return all(p.pid in pids for p in mine)

    wait_for(alive, 120, "workers to start", every=0.2)

    def finished(job_id: str) -> Job | None:
        with ctx.uow() as session:
            found = session.get_one(Job, job_id)
            return found if found.state in ("succeeded", "failed", "cancelled") else None

    # warm-up: the first poll of a new worker's queues, and the model's first load, are not the job's cost
    # (two chunks of one row, so the chunk queue's poller is running too)
    warm = submission.submit(
        ctx, JobCreate(model="logreg", rows=[[0.0] * 20] * 2, options=JobOptions(chunk_rows=1))
    )
    wait_for(lambda: finished(warm.id), 120, "the warm-up job")

    def one_run() -> dict[str, Any]:
        job = submission.submit(ctx, JobCreate(model="logreg", uri="in/rows.npy"))
        done = wait_for(lambda: finished(job.id), 1800, "the job", every=0.02)
        if done.state != "succeeded":
            raise RuntimeError(f"job {done.state}: {done.error}")
        created, started, ended = (
            service.aware(t) for t in (done.created_at, done.started_at, done.finished_at)
        )
        wall = (ended - created).total_seconds()
        return {
            "rows": done.rows_done,
            "chunks": done.chunk_count,
            "wall_s": round(wall, 3),
            "queue_and_plan_s": round((started - created).total_seconds(), 3),
            "claimed_after_s": round((service.aware(done.claimed_at) - created).total_seconds(), 3)
            if done.claimed_at
            else None,
            "rows_per_s": round(done.rows_done / wall),
            "chunk_rows": int(done.options["chunk_rows"]),
            "spans": spans(ctx, job.id),
            "chunk_timeline_ms": timeline(ctx, job.id, created),
        }

    # the same job again and again: the first on a fresh process (its allocator grows for chunk-sized
    # buffers), then as a worker that has been running a while; the median warm run is judged
    def run_and_compare() -> dict[str, Any]:
        found = one_run()
        if alongside is not None:
            alongside.one_pass(found["spans"])
        return found

    cold = one_run()
    if alongside is not None:
        alongside.one_pass(cold["spans"], record=False)  # warms the raw loop as the cold run warms the job
    warm_runs = sorted((run_and_compare() for _ in range(WARM_RUNS)), key=lambda r: r["wall_s"])
    result = {
        **warm_runs[len(warm_runs) // 2],
        "cold_wall_s": cold["wall_s"],
        "warm_walls_s": [r["wall_s"] for r in warm_runs],
    }
    result["worker_peak_mb"] = [round(peak_rss_mb(p.pid), 1) for p in mine]
    for proc in mine:
        proc.send_signal(signal.SIGTERM)
    for proc in mine:
        proc.wait(timeout=60)
    return result


def spans(ctx: AppContext, job_id: str) -> list[tuple[int, int]]:
    """The row ranges of a job's chunks, in order."""
    with ctx.uow() as session:
        found = session.execute(
            select(JobChunk.row_start, JobChunk.row_end)
            .where(JobChunk.job_id == job_id)
            .order_by(JobChunk.index)
        ).all()
    return [(int(a), int(b)) for a, b in found]


def timeline(ctx: AppContext, job_id: str, created: dt.datetime) -> list[dict[str, float]]:
    """Each chunk's claim, start and finish, in ms after the job was created: where the wall time goes."""
    with ctx.uow() as session:
        found = session.execute(
            select(JobChunk.claimed_at, JobChunk.started_at, JobChunk.finished_at)
            .where(JobChunk.job_id == job_id)
            .order_by(JobChunk.index)
        ).all()

    def ms(t: dt.datetime | None) -> float | None:
        return None if t is None else round((service.aware(t) - created).total_seconds() * 1000, 1)

    return [{"claimed": ms(a), "started": ms(b), "finished": ms(c)} for a, b, c in found]


def throughput(tmp: Path, model: Path, rows: int) -> dict[str, Any]:
    ctx = context(tmp / "embedded")
    try:
        register(ctx, model)
        ctx.storage.put_file("in/rows.npy", write_input(tmp / "rows.npy", rows))
        loops = RawLoops(model, tmp / "rows.npy", tmp / "raw-out")
        with processes() as procs:
            job = run_job(ctx, procs, 1, None, alongside=loops)
        raw = {**loops.medians(), "raw_io_hot_s": loops.hot(job.pop("spans"))}
    finally:
        ctx.close()
    rps = job["rows_per_s"]
    return {
        **job,
        "raw_rows_per_s": round(rows / raw["raw_s"]),
        "raw_io_rows_per_s": round(rows / raw["raw_io_s"]),
        "vs_raw": round(rps / (rows / raw["raw_s"]), 3),
        "vs_raw_io": round(rps / (rows / raw["raw_io_s"]), 3),
        "raw_io_hot_rows_per_s": round(rows / raw["raw_io_hot_s"]),
        "vs_raw_io_hot": round(rps / (rows / raw["raw_io_hot_s"]), 3),
        "worker_concurrency": Settings(_env_file=None).worker_concurrency,  # type: ignore[call-arg]
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_jobs(tmp: Path, model: Path, count: int) -> dict[str, Any]:
    """M tiny jobs over HTTP against ``modelyard serve`` (server and clients on separate cores)."""
    everywhere = os.sched_getaffinity(0)
    try:
        return _tiny_jobs(tmp, model, count, everywhere)
    finally:
        os.sched_setaffinity(0, everywhere)


def _tiny_jobs(tmp: Path, model: Path, count: int, everywhere: set[int]) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp / "tiny", log_to_file=False, _env_file=None)  # type: ignore[call-arg]
    env = env_for(settings, MODELYARD_ADMIN_KEY=KEY)
    headers = {"Authorization": f"Bearer {KEY}"}
    with processes() as procs, (tmp / "serve.log").open("ab") as log:
        # the server (API + in-process worker) on core 0, this process (the 4 submitting clients) on core 1
        procs.append(
            subprocess.Popen(
                [*pinned(SERVER_CORE), str(BIN), "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        if len(everywhere) > 1:
            os.sched_setaffinity(0, {CLIENT_CORE})
        wait_for(lambda: _ready(url), 120, "the server", every=0.2)
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            client.post("/api/v1/models", json={"name": "logreg"}).raise_for_status()
            client.post(
                "/api/v1/models/logreg/versions", files={"file": ("m.onnx", model.read_bytes())}
            ).raise_for_status()
            row = np.random.default_rng(1).normal(size=(1, 20)).tolist()
            # one warm-up job: loads the model and starts the queues
            first = client.post("/api/v1/jobs", json={"model": "logreg", "rows": row}).json()["id"]
            wait_for(
                lambda: client.get(f"/api/v1/jobs/{first}").json()["state"] == "succeeded", 60, "warm-up job"
            )

        def submit(n: int) -> list[float]:
            took = []
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                for _ in range(n):
                    t = time.perf_counter()
                    c.post("/api/v1/jobs", json={"model": "logreg", "rows": row}).raise_for_status()
                    took.append(time.perf_counter() - t)
            return took

        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            submit_times = [t for part in pool.map(submit, [count // 4] * 4) for t in part]
        submitted = time.perf_counter() - start
        total = (count // 4) * 4 + 1
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:

            def all_done() -> bool:
                page = client.get(
                    "/api/v1/jobs", params={"state": ["succeeded", "failed"], "limit": 1}
                ).json()
                return bool(page["total"] >= total)

            wait_for(all_done, 1800, "every tiny job", every=0.05)
            wall = time.perf_counter() - start
            latencies = _latencies(client)
    jobs = total - 1
    return {
        "jobs": jobs,
        "wall_s": round(wall, 3),
        "jobs_per_s": round(jobs / wall, 1),
        "per_job_overhead_ms": round(1000 * wall / jobs, 2),
        "submit_phase_s": round(submitted, 3),
        "submit_ms_p50": round(1000 * float(np.median(submit_times)), 2),
        "job_latency_ms_p50": round(1000 * float(np.median(latencies)), 1),
        "job_latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1),
    }


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _latencies(client: httpx.Client) -> list[float]:
    out, offset = [], 0
    while True:
        page = client.get("/api/v1/jobs", params={"limit": 500, "offset": offset}).json()
        for job in page["items"]:
            if job["finished_at"]:
                out.append(
                    (
                        dt.datetime.fromisoformat(job["finished_at"])
                        - dt.datetime.fromisoformat(job["created_at"])
                    ).total_seconds()
                )
        offset += 500
        if offset >= page["total"]:
            return out


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    import psycopg

    name = f"modelyard_bench_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scale_out(tmp: Path, model: Path, rows: int, concurrency: int) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for workers in (1, 2):
        with postgres() as url:
            ctx = context(tmp / f"pg-{workers}", url)
            try:
                register(ctx, model)
                ctx.storage.put_file("in/rows.npy", tmp / "rows.npy")
                with processes() as procs:
                    runs[f"workers_{workers}"] = run_job(ctx, procs, workers, concurrency)
                runs[f"workers_{workers}"].pop("spans")
            finally:
                ctx.close()
    one, two = runs["workers_1"]["wall_s"], runs["workers_2"]["wall_s"]
    return {**runs, "concurrency_per_worker": concurrency, "speedup": round(one / two, 2)}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version()}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
    info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (100k rows, 200 tiny jobs)")
    parser.add_argument("--rows", type=int, help="rows of the throughput job (1,000,000)")
    parser.add_argument("--tiny-jobs", type=int, help="number of tiny jobs (2,000)")
    parser.add_argument(
        "--scale-concurrency", type=int, default=1, help="chunks per worker in the scale-out run"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,tiny,scale")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    tiny = args.tiny_jobs or (200 if args.quick else 2_000)
    skip = set(filter(None, args.skip.split(",")))
    out = args.out or BENCH / "results" / ("jobs-quick.json" if args.quick else "jobs.json")
    report: dict[str, Any] = {
        "benchmark": "jobs",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "plan": {"rows": rows, "chunk_rows": "server default (job_chunk_bytes)", "tiny_jobs": tiny},
        "goals": GOALS,
        "results": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-jobs-") as tmpdir:
        tmp = Path(tmpdir)
        model = onnx_models.logreg(tmp / "logreg.onnx")
        results = report["results"]
        if "throughput" not in skip:
            results["throughput"] = throughput(tmp, model, rows)
        elif "scale" not in skip:
            write_input(tmp / "rows.npy", rows)
        if "tiny" not in skip:
            results["tiny_jobs"] = tiny_jobs(tmp, model, tiny)
        if "scale" not in skip:
            results["scale_out_postgres"] = scale_out(tmp, model, rows, args.scale_concurrency)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["verdict"] = verdict(report["results"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {out}")
    return 0


def verdict(results: dict[str, Any]) -> dict[str, bool]:
    out = {}
    if "throughput" in results:
        t = results["throughput"]
        out["throughput_vs_raw_io"] = t["vs_raw_io"] >= GOALS["throughput_vs_raw_io"]
        out["worker_peak_mb"] = max(t["worker_peak_mb"]) < GOALS["worker_peak_mb"]
    if "tiny_jobs" in results:
        out["tiny_jobs_per_s"] = results["tiny_jobs"]["jobs_per_s"] >= GOALS["tiny_jobs_per_s"]
    return out


def print_table(report: dict[str, Any]) -> None:
    r = report["results"]
    where = f"{report['machine'].get('cpu', '?')}, {report['machine']['cores']} cores"
    lines = [f"jobs benchmark ({report['mode']}, {where})"]
    if "throughput" in r:
        t = r["throughput"]
        lines += [
            f"  throughput    {t['rows']:>9} rows in {t['wall_s']:>7.2f} s = {t['rows_per_s']:>9} rows/s "
            f"(planning/queue {t['queue_and_plan_s']} s)",
            f"  raw ORT loop  {t['raw_rows_per_s']:>9} rows/s -> job/raw = {t['vs_raw']:.3f} (compute only)",
            f"  raw ORT + I/O {t['raw_io_rows_per_s']:>9} rows/s -> job/raw_io = {t['vs_raw_io']:.3f} "
            "(goal >= 0.9; a pass after each run of the job)",
            f"  raw, hot      {t['raw_io_hot_rows_per_s']:>9} rows/s -> job/hot = {t['vs_raw_io_hot']:.3f} "
            "(the loop with I/O back to back)",
            f"  worker peak   {max(t['worker_peak_mb']):.0f} MB (goal < 500)",
        ]
    if "tiny_jobs" in r:
        j = r["tiny_jobs"]
        lines += [
            f"  tiny jobs     {j['jobs']} in {j['wall_s']:.2f} s = {j['jobs_per_s']} jobs/s (goal >= 100), "
            f"{j['per_job_overhead_ms']} ms/job",
            f"                latency p50 {j['job_latency_ms_p50']} ms, p95 {j['job_latency_ms_p95']} ms",
        ]
    if "scale_out_postgres" in r:
        s = r["scale_out_postgres"]
        lines += [
            f"  PostgreSQL    1 worker {s['workers_1']['wall_s']} s, 2 workers {s['workers_2']['wall_s']} s "
            f"-> speed-up {s['speedup']}x ({s['concurrency_per_worker']} chunk(s) per worker)",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
