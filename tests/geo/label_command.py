"""A command model for the tests, as a user would write one: it reads the STAC item whose path is its
last argument, finds "ships" inside the item's footprint, writes them as GeoJSON, and reports a STAC
label item to its callback URL with its token. ``MODE`` (its env) makes it misbehave on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

LABEL_EXT = "https://stac-extensions.github.io/label/v1.0.1/schema.json"


def ships(item: dict) -> dict:
    """Three ships (small squares) and a wake (a bigger one) at the south-west of the footprint."""
    lon, lat = item["bbox"][0], item["bbox"][1]

    def box(x: float, y: float, size: float) -> dict:
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
        return {"type": "Polygon", "coordinates": [ring]}

    feats = [("ship", box(lon + 0.01 * i, lat + 0.01, 0.001)) for i in range(1, 4)]
    feats.append(("wake", box(lon + 0.05, lat + 0.05, 0.002)))
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": g, "properties": {"class": c, "score": 0.9}} for c, g in feats
        ],
    }


def label_item(item: dict) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [LABEL_EXT],
        "id": f"{item['id']}-ships",
        "geometry": item["geometry"],
        "bbox": item["bbox"],
        "properties": {
            "datetime": item["properties"]["datetime"],
            "label:properties": ["class"],
            "label:description": "ships and wakes",
            "label:type": "vector",
            "label:classes": [{"name": "class", "classes": ["ship", "wake"]}],
            "label:tasks": ["detection"],
            "label:methods": ["automated"],
        },
        "links": [{"rel": "source", "href": f"https://data.example.com/{item['id']}.json"}],
        "assets": {"labels": {"href": "labels.geojson", "type": "application/geo+json", "roles": ["labels"]}},
    }


def report(item: dict) -> httpx.Response:
    return httpx.post(
        os.environ["MODELYARD_CALLBACK_URL"],
        headers={"Authorization": f"Bearer {os.environ['MODELYARD_RUN_TOKEN']}"},
        data={"item": json.dumps(label_item(item))},
        files={"file": ("labels.geojson", json.dumps(ships(item)), "application/geo+json")},
        timeout=30,
    )


def main() -> int:
    mode = os.environ.get("MODE", "ok")
    item = json.loads(Path(sys.argv[-1]).read_text())
    secrets = sorted(k for k in os.environ if k.startswith(("MODELYARD_DATA", "MODELYARD_DATABASE", "AWS_")))
    print(f"item {item['id']}; secrets seen: {secrets}", flush=True)
    if mode == "fail":
        print("model weights are corrupt", file=sys.stderr)
        return 4
    if mode == "sleep":
        time.sleep(60)
    if mode == "crash":  # the first attempt hangs (to be killed with its worker), the next one reports
        marker = Path(os.environ["MARKER"])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(60)
    if mode == "silent":
        return 0
    if mode == "cli":  # report with the modelyard CLI instead of HTTP
        Path("label.json").write_text(json.dumps(label_item(item)))
        Path("labels.geojson").write_text(json.dumps(ships(item)))
        run_id = os.environ["MODELYARD_RUN_ID"]
        cli = [sys.executable, "-c", "from modelyard.cli import main; main()", "runs", "report", run_id]
        done = subprocess.run(
            [*cli, "label.json", "--geojson", "labels.geojson"], capture_output=True, text=True
        )
        print(done.stdout, done.stderr, flush=True)
        return done.returncode
    first = report(item)
    print(f"first report: {first.status_code}", flush=True)
    second = report(item)
    print(f"second report: {second.status_code}", flush=True)
    return 0 if first.status_code == 201 else 1


if __name__ == "__main__":
    sys.exit(main())
