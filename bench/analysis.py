"""Tissue analysis benchmark, statistics part: 1,000,000 cells, 10 types, 6 nearest neighbours.

modelyard (``analysis.neighbours.knn_graph`` + ``analysis.stats.interactions``: graph, interaction matrix,
log-odds and a 100-permutation test) against squidpy's ``spatial_neighbors`` + ``nhood_enrichment``
(``n_perms=100``) on the same cells in the same run. Each side runs in a fresh process of its own that
loads the cells from one ``.npy`` file, so its time and peak RSS are its own; squidpy runs in
``bench/.envs/squidpy`` (``requirements-bench.lock``: its stack pins packages our main venv pins
differently), after a warm-up call on 2,000 cells so its numba compilation is not counted. The z-scores of
every pair are compared in sign.

    .venv/bin/python bench/analysis.py                # full: 1,000,000 cells -> results/analysis.json
    .venv/bin/python bench/analysis.py --quick        # 100,000 cells -> results/analysis-quick.json
    .venv/bin/python bench/analysis.py --no-squidpy   # modelyard only
    .venv/bin/python bench/analysis.py --setup        # only build bench/.envs/squidpy (make bench does)

The cells: uniform positions in a square; types laid in patches (a 40 x 40 grid of random types) with 30 %
of cells retyped at random, so every pair is clearly enriched or depleted.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from peers import PeerEnv, ensure_env  # noqa: E402

N_TYPES, K, N_PERMS = 10, 6, 100
LIMIT_SECONDS, LIMIT_RSS_GIB, LIMIT_SPEEDUP = 5.0, 0.5, 3.0


def squidpy_env() -> PeerEnv:
    """The squidpy virtualenv, pinned by ``requirements-bench.lock``."""
    lines = (REPO / "requirements-bench.lock").read_text().splitlines()
    reqs = tuple(s for s in (line.strip() for line in lines) if s and not s.startswith("#"))
    return PeerEnv("squidpy", reqs, "import squidpy, anndata, numba")


OURS = """
import json, resource, sys, time
import numpy as np
from modelyard.analysis import neighbours, stats
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
xy, types = np.load(sys.argv[1]), np.load(sys.argv[2])
base = rss()
start, cpu = time.perf_counter(), time.process_time()
graph = neighbours.knn_graph(xy, %(k)d)
mid = time.perf_counter()
result = stats.interactions(graph, types, %(n_types)d, n_perms=%(n_perms)d, seed=0)
end = time.perf_counter()
np.save(sys.argv[3], result.counts_test.z)
print(json.dumps({"seconds": end - start, "graph_seconds": mid - start, "stats_seconds": end - mid,
                  "cpu_seconds": time.process_time() - cpu, "peak_rss_gib": rss(), "rss_before_gib": base}))
"""

SQUIDPY = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, anndata as ad, squidpy as sq
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
def adata(xy, types):
    names = [str(i) for i in range(%(n_types)d)]
    obs = pd.DataFrame({"type": pd.Categorical(types.astype(str), categories=names)})
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = xy
    return a
xy, types = np.load(sys.argv[1]), np.load(sys.argv[2])
warm = adata(xy[:2000], types[:2000])
sq.gr.spatial_neighbors(warm, n_neighs=%(k)d, coord_type="generic")
sq.gr.nhood_enrichment(warm, cluster_key="type", n_perms=5, seed=0, show_progress_bar=False)
a = adata(xy, types)
base = rss()
start, cpu = time.perf_counter(), time.process_time()
sq.gr.spatial_neighbors(a, n_neighs=%(k)d, coord_type="generic")
mid = time.perf_counter()
sq.gr.nhood_enrichment(a, cluster_key="type", n_perms=%(n_perms)d, seed=0, show_progress_bar=False)
end = time.perf_counter()
np.save(sys.argv[3], np.asarray(a.uns["type_nhood_enrichment"]["zscore"]))
print(json.dumps({"seconds": end - start, "graph_seconds": mid - start, "stats_seconds": end - mid,
                  "cpu_seconds": time.process_time() - cpu, "peak_rss_gib": rss(), "rss_before_gib": base,
                  "squidpy": sq.__version__}))
"""


def make_cells(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a square and patchy types (module docstring)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1, (n, 2))
    grid = rng.integers(0, N_TYPES, (40, 40))
    types = grid[(xy[:, 0] * 40).astype(int), (xy[:, 1] * 40).astype(int)]
    mixed = rng.random(n) < 0.3
    types[mixed] = rng.integers(0, N_TYPES, int(mixed.sum()))
    return xy, types.astype(np.int32)


def run(python: str, code: str, files: list[Path], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    params = {"k": K, "n_types": N_TYPES, "n_perms": N_PERMS}
    out = subprocess.run(
        [python, "-c", code % params, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 cells")
    parser.add_argument("--cells", type=int, default=None, help="number of cells (default 1,000,000)")
    parser.add_argument("--no-squidpy", action="store_true", help="modelyard only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--setup", action="store_true", help="only build bench/.envs/squidpy (make bench)")
    args = parser.parse_args(argv)
    if args.setup:
        ensure_env(squidpy_env())
        return 0
    n = args.cells or (100_000 if args.quick else 1_000_000)
    out_path = args.out or BENCH / "results" / ("analysis-quick.json" if args.quick else "analysis.json")
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    report: dict[str, Any] = {
        "benchmark": "analysis.stats",
        "cells": n,
        "types": N_TYPES,
        "k": K,
        "n_perms": N_PERMS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        xy_path, t_path = Path(tmp) / "xy.npy", Path(tmp) / "types.npy"
        xy, types = make_cells(n)
        np.save(xy_path, xy)
        np.save(t_path, types)
        ours_z = Path(tmp) / "ours.npy"
        report["modelyard"] = run(sys.executable, OURS, [xy_path, t_path, ours_z], env=env)
        if not args.no_squidpy:
            squid = ensure_env(squidpy_env())
            theirs_z = Path(tmp) / "squidpy.npy"
            report["squidpy"] = run(str(squid.python), SQUIDPY, [xy_path, t_path, theirs_z])
            a, b = np.load(ours_z), np.load(theirs_z)
            agree = np.sign(a) == np.sign(b)
            report["z_sign_agreement"] = {"pairs": int(agree.size), "agree": int(agree.sum())}
            report["speedup"] = report["squidpy"]["seconds"] / report["modelyard"]["seconds"]
    report["load_average_after"] = os.getloadavg()
    print_table(report)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['cells']:,} cells, {r['types']} types, {r['k']} nearest, {r['n_perms']} permutations")
    print(f"{'':12} {'total s':>8} {'graph s':>8} {'stats s':>8} {'CPU s':>8} {'peak RSS GiB':>13}")
    for name in ("modelyard", "squidpy"):
        if name in r:
            s = r[name]
            row = f"{s['seconds']:8.2f} {s['graph_seconds']:8.2f} {s['stats_seconds']:8.2f}"
            print(f"{name:12} {row} {s['cpu_seconds']:8.2f} {s['peak_rss_gib']:13.2f}")
    print(f"load average before {r['load_average'][0]:.1f}, after {r['load_average_after'][0]:.1f}")
    if "speedup" in r:
        agree = r["z_sign_agreement"]
        print(f"speed-up {r['speedup']:.1f}x; z-score signs agree on {agree['agree']}/{agree['pairs']} pairs")
    ours = r["modelyard"]
    print(
        f"targets: <= {LIMIT_SECONDS:g} s ({'met' if ours['seconds'] <= LIMIT_SECONDS else 'MISSED'}), "
        f"<= {LIMIT_RSS_GIB:g} GiB ({'met' if ours['peak_rss_gib'] <= LIMIT_RSS_GIB else 'MISSED'})"
    )


if __name__ == "__main__":
    sys.exit(main())
