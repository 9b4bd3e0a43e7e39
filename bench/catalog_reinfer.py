"""Catalog re-inference benchmark: a collection of N images bound to a pipeline with a ``features`` stage
(a small ONNX image model), inferred with version 1, then version 2 registered and made current; the time
from the switch to the re-inference switching search (the stage run in place over the records, values
stored, switched) against a raw onnxruntime loop over the same images (decode, preprocess, run, in batches
of the stage's size, the session made with the service's options; run just before the switch and after
it, averaged). Goal (issue #14): records/s >= 80% of the raw loop.

In process (SQLite + a local folder), re-inference steps and the first inference's batches run in this
thread (no worker process, no HTTP), so the figure is the catalog's and the pipelines' own cost. As in a
worker, the helper process that decodes ``features`` images is started first, and what starting made is
frozen out of the garbage collector (``gc.freeze``, as ``modelyard worker`` does).

    .venv/bin/python bench/catalog_reinfer.py --records 10000
    .venv/bin/python bench/catalog_reinfer.py --quick        # 1,000 records

Prints a table and writes JSON to ``bench/results/catalog-reinfer.json`` (``-quick`` with --quick).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO)]

from tests.onnx_models import image_embedder  # noqa: E402

from modelyard.app import build_context  # noqa: E402
from modelyard.catalog import binding, ingest, reinfer, versions  # noqa: E402
from modelyard.catalog.models import Reinference  # noqa: E402
from modelyard.catalog.schemas import CollectionCreate, VersionSwitch  # noqa: E402
from modelyard.catalog.service import create_collection  # noqa: E402
from modelyard.context import AppContext  # noqa: E402
from modelyard.durable import ClaimLoop  # noqa: E402
from modelyard.inferrers.features import Preprocess, preprocess  # noqa: E402
from modelyard.pipelines import service as pipelines  # noqa: E402
from modelyard.pipelines.dispatch import STAGE_RUNS  # noqa: E402
from modelyard.pipelines.run.runner import run_batch  # noqa: E402
from modelyard.registry import service as registry  # noqa: E402
from modelyard.registry.schemas import ModelCreate  # noqa: E402
from modelyard.serving.runtime import session_options  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

BATCH = 256
SIDE = 32
PARAMS = {"model": "embedder", "resize": [SIDE, SIDE], "mean": 0, "std": 1}
SPEC = {
    "name": "embed",
    "raw": "image",
    "defaults": {"batch_size": BATCH},
    "stages": {"feat": {"type": "inferrer", "inferrer": "features", "params": PARAMS}},
}


def add_version(ctx: AppContext, path: Path, *, first: bool) -> None:
    with ctx.uow() as session:
        if first:
            registry.create_model(session=session, data=ModelCreate(name="embedder"))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        registry.add_version(session=session, storage=ctx.storage, name="embedder", path=path, sha256=digest)
    ctx.inference.invalidate("embedder")


def settle(ctx: AppContext, job_id: str | None = None) -> None:
    """Run ready batches, harvest and advance re-inferences until nothing moves (or the job stopped)."""

    def start(batch_id: str) -> None:
        run_batch(ctx, batch_id)

    loop = ClaimLoop(ctx, STAGE_RUNS, start, parallel_starts=False)
    while True:
        ran = 0
        while started := loop.dispatch_once():
            ran += started
        harvested = 0
        while (got := binding.harvest(ctx, limit=1000)) > 0:
            harvested += got
        running = reinfer.advance(ctx)
        if job_id is not None:
            with ctx.uow() as session:
                job = session.get(Reinference, job_id)
                if job is not None and job.state != "running":
                    return
        elif not ran and not harvested and not running:
            return


def images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(path, format="PNG")
        paths.append(path)
    return paths


def raw_loop(model: Path, paths: list[Path], intra_op_threads: int) -> float:
    """records/s of decode + preprocess + onnxruntime in batches of the stage's size, the session made
    with the service's options (its intra-op threads), so both run the model alike."""
    options = session_options(intra_op_threads)
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    spec = Preprocess.from_params(PARAMS)
    start = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        batch = [Image.open(io.BytesIO(p.read_bytes())).convert("RGB") for p in paths[i : i + BATCH]]
        session.run(None, {"image": preprocess(batch, spec)})
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 records")
    args = parser.parse_args()
    n = 1000 if args.quick else args.records
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "data",
            database_url=f"sqlite:///{root / 'modelyard.db'}",
            admin_key="bench-admin-key-0123456789",
            log_to_file=False,
            worker=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        ctx = build_context(settings)
        ctx.preparer.get().start()  # as a worker's re-inference thread does when it starts
        gc.freeze()  # as ``modelyard worker`` does once started
        try:
            v1 = image_embedder(root / "v1.onnx", seed=0)
            v2 = image_embedder(root / "v2.onnx", seed=1)
            add_version(ctx, v1, first=True)
            pipelines.apply(ctx, SPEC)
            create_collection(ctx, CollectionCreate(name="pics", pipelines=["embed"]))
            paths = images(settings.data_dir / "img", n)
            lines = b"".join(
                json.dumps({"id": str(i), "source": str(p)}).encode() + b"\n" for i, p in enumerate(paths)
            )
            t0 = time.perf_counter()
            report = ingest.ingest(ctx, "pics", ingest.read_rows("jsonl", [lines], max_parquet_bytes=0))
            settle(ctx)
            first_s = time.perf_counter() - t0
            add_version(ctx, v2, first=False)
            raw_before = raw_loop(v2, paths, settings.intra_op_threads)
            t0 = time.perf_counter()
            job = versions.switch(ctx, "pics", VersionSwitch(producer="embedder", version="2"))
            settle(ctx, job.id)
            switch_s = time.perf_counter() - t0
            done = versions.get_reinference(ctx, "pics", job.id)
        finally:
            ctx.close()
        raw_after = raw_loop(v2, paths, settings.intra_op_threads)
    raw = (raw_before + raw_after) / 2  # the machine's load may change: the loop runs before and after
    rate = n / switch_s
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "records": n,
        "ingested": report.created,
        "first_inference_s": round(first_s, 2),
        "reinference_s": round(switch_s, 2),
        "reinference_state": done.state,
        "reinference_done": done.done,
        "reinference_records_per_s": round(rate, 1),
        "raw_onnxruntime_records_per_s": round(raw, 1),
        "raw_before_after_records_per_s": [round(raw_before, 1), round(raw_after, 1)],
        "intra_op_threads": settings.intra_op_threads,
        "ratio": round(rate / raw, 3),
        "goal_ratio": 0.8,
    }
    print(f"{'measure':<40}{'value':>14}")
    for key, value in result.items():
        if key not in ("when", "machine"):
            print(f"{key:<40}{value!s:>14}")
    out = BENCH / "results" / ("catalog-reinfer-quick.json" if args.quick else "catalog-reinfer.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
