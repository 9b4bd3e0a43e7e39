"""Tissue-image benchmark: preprocessing and nuclei segmentation through the Python API (no server).

1. **segment 4096**: a 4,096 x 4,096 x 3-channel uint16 image of nuclei (discs on a jittered lattice, so
   the true count is known) in memory, preprocessed, then segmented (tiles of 1,024, 2 threads). Goal:
   segmentation <= 20 s; the count found is printed beside the true one.
2. **large file**: a 20,000 x 20,000 x 8-channel uint16 OME-TIFF written tiled on disk (6.4 GB, made tile
   by tile), then, in a child process, preprocessed into a tiled OME-TIFF and segmented into a tiled mask
   TIFF. Goal: peak RSS of that child <= 2 GiB; its time is reported.

Prints a table and writes JSON to ``bench/results/analysis_images.json`` (``-quick`` with --quick, which
uses 2,048 and 4,096 pixel sides instead). Run it alone, under the benchmark lock:

    flock /tmp/modelyard-bench.lock nice -n 0 .venv/bin/python bench/analysis_images.py
    .venv/bin/python bench/analysis_images.py --quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "src")]

from modelyard.analysis.images import open_image, tile_grid, write_tiled  # noqa: E402
from modelyard.analysis.preprocess import Preprocess, preprocess_file, preprocess_image  # noqa: E402
from modelyard.analysis.segment import Segmentation, segment  # noqa: E402

SPACING, RADIUS, JITTER = 24, 7, 4  # a nucleus per 24 x 24 lattice cell, wholly inside it
TILE = 1024
WORKERS = 2


class Lattice:
    """Nuclei at jittered lattice points of a ``height`` x ``width`` image, drawn a window at a time."""

    def __init__(self, height: int, width: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        rows, cols = height // SPACING, width // SPACING
        self.height, self.width = height, width
        self.jitter = rng.integers(-JITTER, JITTER + 1, size=(2, rows, cols))
        self.level = rng.integers(0, 4, size=(rows, cols))  # marker level of each cell
        self.count = rows * cols

    def window(self, y0: int, y1: int, x0: int, x1: int, channel: int, seed: int) -> np.ndarray:
        """Channel ``channel`` of rows y0:y1, columns x0:x1 (uint16)."""
        yy = np.arange(y0, y1)[:, None]
        xx = np.arange(x0, x1)[None, :]
        ry = np.minimum(yy // SPACING, self.jitter.shape[1] - 1)
        rx = np.minimum(xx // SPACING, self.jitter.shape[2] - 1)
        cy = ry * SPACING + SPACING // 2 + self.jitter[0, ry, rx]
        cx = rx * SPACING + SPACING // 2 + self.jitter[1, ry, rx]
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS * RADIUS
        inside &= (yy // SPACING < self.jitter.shape[1]) & (xx // SPACING < self.jitter.shape[2])
        bright = 4000.0 if channel == 0 else 1000.0 * ((self.level[ry, rx] + channel) % 4)
        rng = np.random.default_rng(seed)
        out = 300 + rng.integers(0, 120, size=inside.shape)
        out = out + np.where(inside, bright, 0.0)
        return np.asarray(out, dtype=np.uint16)

    def array(self, channels: int) -> np.ndarray:
        """The whole image in memory (small sizes only)."""
        return np.stack([self.window(0, self.height, 0, self.width, c, c) for c in range(channels)])


def write_large(path: Path, side: int, channels: int) -> int:
    """The large OME-TIFF, tile by tile; returns the number of nuclei in it."""
    lattice = Lattice(side, side)
    grid = tile_grid(side, side, TILE, 0)

    def tiles() -> Iterator[np.ndarray]:
        for c in range(channels):
            for t in grid:
                yield lattice.window(t.y0, t.y1, t.x0, t.x1, c, seed=c * 100_000 + t.index)

    names = ["DAPI", "CD3", "CD4", "CD8", "CD20", "CD68", "PanCK", "Ki67"][:channels]
    write_tiled(path, tiles(), shape=(channels, side, side), dtype=np.uint16, size=TILE, channels=names)
    return lattice.count


def run_large(source: Path, work: Path) -> dict[str, Any]:
    """Child process: preprocess then segment the large file, all on disk (prints its figures as JSON)."""
    image = open_image(source)
    start = time.perf_counter()
    preprocess_file(image, work / "pre.ome.tif", Preprocess(), tile=TILE, workers=WORKERS)
    pre_seconds = time.perf_counter() - start
    print(f"preprocessed in {pre_seconds:.0f} s", file=sys.stderr, flush=True)
    pre = open_image(work / "pre.ome.tif")
    start = time.perf_counter()
    found = segment(
        pre,
        Segmentation(channel="DAPI", diameter=14),
        tile=TILE,
        mask_path=work / "mask.tif",
        workers=WORKERS,
    )
    seg_seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "preprocess_s": pre_seconds,
        "segment_s": seg_seconds,
        "cells": len(found.cells),
        "peak_rss_bytes": rss,
    }


def bench_4096(side: int) -> dict[str, Any]:
    lattice = Lattice(side, side, seed=1)
    image = open_image(lattice.array(3))
    start = time.perf_counter()
    pre, _ = preprocess_image(image, Preprocess(), tile=TILE, workers=WORKERS)
    pre_seconds = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    found = segment(pre, Segmentation(diameter=14), tile=TILE, workers=WORKERS)
    return {
        "side": side,
        "preprocess_s": pre_seconds,
        "segment_s": time.perf_counter() - start,
        "segment_cpu_s": time.process_time() - cpu,
        "cells": len(found.cells),
        "true_cells": lattice.count,
    }


def bench_large(side: int, channels: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-images-", dir="/tmp"))
    try:
        source = work / "large.ome.tif"
        start = time.perf_counter()
        true = write_large(source, side, channels)
        made = time.perf_counter() - start
        print(f"wrote {side}² x {channels} in {made:.0f} s", file=sys.stderr, flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(source), str(work)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out = json.loads(child.stdout.strip().splitlines()[-1])
        sizes = {p.name: p.stat().st_size for p in work.iterdir()}
        return {"side": side, "channels": channels, "write_s": made, "true_cells": true, "bytes": sizes} | out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--segment-only", action="store_true", help="only part 1 (-segment.json)")
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_large(Path(args.child[0]), Path(args.child[1]))))
        return
    name = "analysis_images-quick.json" if args.quick else "analysis_images.json"
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": os.getloadavg(),
    }
    small = result["segment"] = bench_4096(2048 if args.quick else 4096)
    if args.segment_only:
        out = BENCH / "results" / name.replace(".json", "-segment.json")
        out.write_text(json.dumps(result | {"load_average_after": os.getloadavg()}, indent=2) + "\n")
        print(f"segment {small['side']}²: {small['segment_s']:.1f} s, {small['segment_cpu_s']:.1f} s CPU")
        return
    (BENCH / "results" / name).write_text(json.dumps(result, indent=2) + "\n")  # kept if the next part dies
    print(f"segment: {small}", file=sys.stderr, flush=True)
    large = result["large"] = bench_large(4096 if args.quick else 20_000, 8)
    result["load_average_after"] = os.getloadavg()
    (BENCH / "results" / name).write_text(json.dumps(result, indent=2) + "\n")
    gib = large["peak_rss_bytes"] / 2**30
    rows = [
        ("segment", f"{small['side']}² x 3", f"{small['segment_s']:.1f} s", "<= 20 s",
         f"{small['cells']} of {small['true_cells']} cells; preprocess {small['preprocess_s']:.1f} s"),
        ("preprocess + segment", f"{large['side']}² x {large['channels']} (file)",
         f"{large['preprocess_s'] + large['segment_s']:.0f} s", "report",
         f"preprocess {large['preprocess_s']:.0f} s, segment {large['segment_s']:.0f} s, "
         f"{large['cells']} of {large['true_cells']} cells"),
        ("peak RSS", "same run", f"{gib:.2f} GiB", "<= 2 GiB", "child process: ru_maxrss"),
    ]  # fmt: skip
    print(f"{'measure':<22} {'input':<22} {'result':>10} {'goal':>9}  notes")
    for row in rows:
        print(f"{row[0]:<22} {row[1]:<22} {row[2]:>10} {row[3]:>9}  {row[4]}")


if __name__ == "__main__":
    main()
