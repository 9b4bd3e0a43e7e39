"""Geo benchmark: STAC items validated, stored and matched against 10,000 AOIs, through the scenes
service (not HTTP), on the embedded default (SQLite + in-process STRtree) and on PostgreSQL + PostGIS.

10,000 active AOIs (irregular 12-gons of 0.05-0.5° over Europe, each wanting 0-3 Sentinel-2 wavelengths at
10-60 m), and N Sentinel-2 L2A-like eo v1.1 + projection items (1° footprints over the same region, 6
bands in 6 assets with per-asset GSD). Each item matches about a dozen AOIs. Measured per item posted
alone (its own transaction: schema validation, footprint and bands, scene row, spatial candidates, rules,
runs queued): items/s, p50/p99 of the whole post, and p50/p99 of the match alone (candidates + rules).
Then the same items again, which must store nothing and queue no run (idempotency), and in
ItemCollections of 100. The first item (schema compilation, index build) is timed apart.

Prints a table and writes JSON to ``bench/results/geo.json`` (``geo-quick.json`` with --quick).

    .venv/bin/python bench/geo.py            # full pass (10,000 AOIs, 2,000 items; PostGIS if reachable)
    .venv/bin/python bench/geo.py --quick    # smoke run (10,000 AOIs, 200 items)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "src")]

from modelyard.app import build_context  # noqa: E402
from modelyard.context import AppContext  # noqa: E402
from modelyard.geo import bands, matching, scenes, spatial  # noqa: E402
from modelyard.geo.models import Aoi  # noqa: E402
from modelyard.geo.shapes import footprint  # noqa: E402
from modelyard.registry.models import RegisteredModel  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5"
REGION = (-10.0, 35.0, 30.0, 60.0)  # lon/lat box the AOIs and scenes fall in
S2 = [
    ("B02", "blue", 0.490, 0.098, 10.0),
    ("B03", "green", 0.560, 0.045, 10.0),
    ("B04", "red", 0.665, 0.038, 10.0),
    ("B08", "nir", 0.842, 0.145, 10.0),
    ("B11", "swir16", 1.610, 0.143, 20.0),
    ("B12", "swir22", 2.190, 0.242, 20.0),
]
MODELS = ["fields", "water", "forest"]


def aoi_rows(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` AOIs as rows: irregular 12-gons, normalised as the service does."""
    rows = []
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        lon = rng.uniform(REGION[0], REGION[2])
        lat = rng.uniform(REGION[1], REGION[3])
        radius = rng.uniform(0.025, 0.25)
        angles = (np.arange(12) + rng.uniform(-0.3, 0.3, 12)) * (2 * math.pi / 12)
        ring = [
            [lon + radius * r * math.cos(a), lat + radius * r * math.sin(a)]
            for a, r in zip(angles, rng.uniform(0.6, 1.0, 12), strict=True)
        ]
        shape = footprint({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
        wanted = sorted(rng.choice([b[2] for b in S2], size=int(rng.integers(0, 4)), replace=False).tolist())
        rows.append(
            {
                "name": f"aoi-{i}",
                "geometry": shape.geojson,
                "min_lon": shape.bbox[0],
                "min_lat": shape.bbox[1],
                "max_lon": shape.bbox[2],
                "max_lat": shape.bbox[3],
                "target_resolution": float(rng.choice([10.0, 20.0, 30.0, 60.0])),
                "wavelengths": wanted,
                "model": MODELS[i % len(MODELS)],
                "tags": [],
                "active": True,
                "created_at": now,
                "updated_at": now,
                "revision": 1,
            }
        )
    return rows


def item(i: int, rng: np.random.Generator) -> dict[str, Any]:
    """A Sentinel-2 L2A-like item with a 1° footprint in the region."""
    lon = round(rng.uniform(REGION[0], REGION[2] - 1), 4)
    lat = round(rng.uniform(REGION[1], REGION[3] - 1), 4)
    ring = [[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat + 1], [lon, lat]]
    stac_id = f"S2B_MSIL2A_20260601T103629_N0510_R008_T31TFJ_{i:06d}"
    assets: dict[str, Any] = {
        name: {
            "href": f"https://data.example.com/{stac_id}/{name}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "gsd": gsd,
            "eo:bands": [{"name": name, "common_name": cn, "center_wavelength": c, "full_width_half_max": w}],
            "proj:shape": [10980, 10980] if gsd == 10 else [5490, 5490],
        }
        for name, cn, c, w, gsd in S2
    }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "id": stac_id,
        "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [lon, lat, lon + 1, lat + 1],
        "properties": {
            "datetime": "2026-06-01T10:36:29.024000Z",
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(float(rng.uniform(0, 40)), 2),
            "proj:epsg": 32631,
        },
        "links": [
            {"rel": "collection", "href": "https://data.example.com/collections/sentinel-2-l2a"},
            {"rel": "self", "href": f"https://data.example.com/items/{stac_id}"},
        ],
        "assets": assets,
    }


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    """A fresh PostgreSQL database, or None when the server is unreachable."""
    name = f"modelyard_bench_geo_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ms(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def load_aois(ctx: AppContext, rows: list[dict[str, Any]]) -> float:
    index = spatial.index(ctx.db, ctx.settings.geo_spatial_index)
    start = time.perf_counter()
    with ctx.uow() as session:
        session.add_all(RegisteredModel(name=m) for m in MODELS)
        session.flush()
        aois = [Aoi(**r) for r in rows]
        session.add_all(aois)
        session.flush()
        for aoi in aois:
            index.changed(session, aoi.id, aoi.geometry)
        spatial.bump(session)
    return time.perf_counter() - start


def match_times(ctx: AppContext, items: list[dict[str, Any]]) -> tuple[list[float], float]:
    """The match alone (candidates + rules) per item, and the mean number of matches."""
    index = spatial.index(ctx.db, ctx.settings.geo_spatial_index)
    times, found = [], 0
    with ctx.uow() as session:
        for it in items:
            shape = footprint(it["geometry"], ["geometry"])
            spectral = bands.normalise(it)
            start = time.perf_counter()
            verdicts = matching.judge_all(
                index.candidates(session, shape.shape), spectral.bands, spectral.gsd
            )
            times.append(time.perf_counter() - start)
            found += sum(v.matched for v in verdicts)
    return times, found / len(items)


def run(label: str, settings: Settings, n_aois: int, n_items: int) -> dict[str, Any]:
    ctx = build_context(settings)
    rng = np.random.default_rng(7)
    load_s = load_aois(ctx, aoi_rows(n_aois, rng))
    items = [item(i, rng) for i in range(n_items + 1)]
    start = time.perf_counter()
    scenes.post_scenes(ctx, items[0])
    first_s = time.perf_counter() - start
    items = items[1:]
    times = []
    runs = 0
    start, cpu = time.perf_counter(), time.process_time()
    for it in items:
        t0 = time.perf_counter()
        runs += scenes.post_scenes(ctx, it).runs_queued
        times.append(time.perf_counter() - t0)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    again_start = time.perf_counter()
    again = sum(scenes.post_scenes(ctx, it).runs_queued for it in items[:200])
    again_s = time.perf_counter() - again_start
    batch_items = [item(n_items + 1 + i, rng) for i in range(min(1000, n_items))]
    start = time.perf_counter()
    for lo in range(0, len(batch_items), 100):
        scenes.post_scenes(ctx, {"type": "FeatureCollection", "features": batch_items[lo : lo + 100]})
    batch_s = time.perf_counter() - start
    match, mean_matches = match_times(ctx, items[:500])
    out = {
        "label": label,
        "index": spatial.index(ctx.db).name,
        "aois": n_aois,
        "items": len(items),
        "aoi_load_s": round(load_s, 2),
        "first_item_s": round(first_s, 3),
        "items_per_s": round(len(items) / total, 1),
        # this process's CPU per item: what a core would do alone (the machine may be shared)
        "cpu_ms_per_item": round(cpu / len(items) * 1000, 2),
        "post": ms(times),
        "match": ms(match),
        "matches_per_item": round(mean_matches, 2),
        "runs_queued": runs,
        "repost_runs_queued": again,
        "repost_items_per_s": round(min(200, len(items)) / again_s, 1),
        "collection_items_per_s": round(len(batch_items) / batch_s, 1),
    }
    ctx.inference.close()
    ctx.engine.dispose()
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"geo: {results[0]['aois']:,} AOIs, {results[0]['items']:,} Sentinel-2 eo items posted one by one "
        "(validate + store + match + queue runs)",
        "  database / index          items/s  CPU/item  post p50  post p99  match p50  match p99  matches  "
        "100-item collections  first item",
    ]
    for r in results:
        lines.append(
            f"  {r['label']:<24} {r['items_per_s']:>8.1f}  {r['cpu_ms_per_item']:>6.2f}ms"
            f"  {r['post']['p50_ms']:>6.2f}ms  {r['post']['p99_ms']:>6.2f}ms"
            f"  {r['match']['p50_ms']:>7.3f}ms  {r['match']['p99_ms']:>7.3f}ms  {r['matches_per_item']:>7.2f}"
            f"  {r['collection_items_per_s']:>12.1f} items/s  {r['first_item_s']:>6.2f} s"
        )
    lines.append(
        "  goal: >= 200 items/s on the embedded default; reposting queued runs: "
        + ", ".join(f"{r['label']} {r['repost_runs_queued']}" for r in results)
        + " (must be 0)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 items instead of 2,000")
    parser.add_argument("--aois", type=int, default=10_000)
    parser.add_argument("--items", type=int, help="items posted one by one (default 2,000; quick 200)")
    parser.add_argument("--no-postgres", action="store_true", help="the embedded default only")
    args = parser.parse_args()
    n_items = args.items or (200 if args.quick else 2000)
    results = []
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-geo-") as tmp:
        base = {"log_to_file": False, "worker": False, "log_level": "WARNING", "_env_file": None}
        embedded = Settings(data_dir=Path(tmp) / "sqlite", **base)  # type: ignore[arg-type]
        results.append(run("sqlite / strtree", embedded, args.aois, n_items))
        if not args.no_postgres:
            for choice in ("postgis", "memory"):
                with postgres() as url:
                    if url is None:
                        print("PostgreSQL unreachable at 127.0.0.1:5432: PostGIS row skipped")
                        break
                    settings = Settings(
                        data_dir=Path(tmp) / choice,
                        database_url=url,
                        geo_spatial_index=choice,
                        **base,  # type: ignore[arg-type]
                    )
                    results.append(
                        run(
                            f"postgresql / {'postgis' if choice == 'postgis' else 'strtree'}",
                            settings,
                            args.aois,
                            n_items,
                        )
                    )
    print(table(results))
    out = BENCH / "results" / ("geo-quick.json" if args.quick else "geo.json")
    payload = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "quick": args.quick,
        "runs": results,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
