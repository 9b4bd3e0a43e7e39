"""Geo fixtures: clients of a fresh app (SQLite only, or on both databases where the dialect matters),
and realistic STAC eo items made on the spot."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY

EO_V1 = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
EO_V2 = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJ = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
# Sentinel-2 MSI bands: (name, common name, centre µm, FWHM µm, GSD m)
S2_BANDS = [
    ("B02", "blue", 0.490, 0.098, 10.0),
    ("B03", "green", 0.560, 0.045, 10.0),
    ("B04", "red", 0.665, 0.038, 10.0),
    ("B08", "nir", 0.842, 0.145, 10.0),
    ("B11", "swir16", 1.610, 0.143, 20.0),
    ("B12", "swir22", 2.190, 0.242, 20.0),
]


def _client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.ctx = app.state.ctx  # type: ignore[attr-defined]
        client.post("/api/v1/models", json={"name": "fields", "metadata": {}})
        client.post("/api/v1/models", json={"name": "water", "metadata": {}})
        yield client


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings of a fresh app on SQLite."""
    return Settings(
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def api(sqlite_settings: Settings) -> Iterator[TestClient]:
    """A client of a fresh app on SQLite, with models ``fields`` and ``water`` registered."""
    yield from _client(sqlite_settings)


@pytest.fixture
def both(settings: Settings) -> Iterator[TestClient]:
    """``api`` on SQLite and on PostgreSQL (with PostGIS)."""
    yield from _client(settings)


def square(lon: float, lat: float, size: float = 1.0) -> dict[str, Any]:
    """A square polygon with its south-west corner at (lon, lat)."""
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def s2_item(
    stac_id: str = "S2B_31TFJ_20260601_0_L2A",
    geometry: dict[str, Any] | None = None,
    *,
    bands: list[tuple[str, str, float, float, float]] | None = None,
    collection: str | None = "sentinel-2-l2a",
) -> dict[str, Any]:
    """A Sentinel-2 L2A-like eo v1.1 item: one asset per band, bands in the assets, GSD per asset."""
    geometry = geometry or square(5.0, 45.0)
    xs = [p[0] for ring in geometry["coordinates"] for p in ring]
    ys = [p[1] for ring in geometry["coordinates"] for p in ring]
    assets: dict[str, Any] = {
        name: {
            "href": f"https://data.example.com/{stac_id}/{name}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "gsd": gsd,
            "eo:bands": [
                {
                    "name": name,
                    "common_name": common,
                    "center_wavelength": centre,
                    "full_width_half_max": fwhm,
                }
            ],
        }
        for name, common, centre, fwhm, gsd in (S2_BANDS if bands is None else bands)
    }
    assets["thumbnail"] = {"href": f"https://data.example.com/{stac_id}/thumb.jpg", "type": "image/jpeg"}
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [EO_V1, PROJ],
        "id": stac_id,
        "geometry": geometry,
        "bbox": [min(xs), min(ys), max(xs), max(ys)],
        "properties": {
            "datetime": "2026-06-01T10:36:29Z",
            "platform": "sentinel-2b",
            "instruments": ["msi"],
            "eo:cloud_cover": 3.2,
            "proj:epsg": 32631,
        },
        "links": [{"rel": "self", "href": f"https://data.example.com/{stac_id}.json"}],
        "assets": assets,
    }
    if collection is not None:
        item["collection"] = collection
        item["links"].append({"rel": "collection", "href": "https://data.example.com/collection.json"})
    return item


def stac11_item(stac_id: str = "S2C_STAC11", geometry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The same kind of item in STAC 1.1 / eo v2 form: ``bands`` with ``eo:`` fields, GSD per band."""
    item = s2_item(stac_id, geometry, collection=None)
    item["stac_version"] = "1.1.0"
    item["stac_extensions"] = [EO_V2]
    item["properties"].pop("proj:epsg")
    for name, common, centre, fwhm, gsd in S2_BANDS:
        asset = item["assets"][name]
        asset.pop("eo:bands")
        asset.pop("gsd")
        asset["bands"] = [
            {
                "name": name,
                "eo:common_name": common,
                "eo:center_wavelength": centre,
                "eo:full_width_half_max": fwhm,
                "gsd": gsd,
            }
        ]
    return item


def variant(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``item`` with top-level ``changes``."""
    out = copy.deepcopy(item)
    out.update(changes)
    return out


def make_aoi(api: TestClient, **body: Any) -> dict[str, Any]:
    """Create an AOI (defaults: a 1° square at 5,45, 10 m, red, model ``fields``)."""
    data = {
        "name": "vineyards",
        "geometry": square(5.2, 45.2, 0.5),
        "target_resolution": 10,
        "model": "fields",
    }
    data.update(body)
    resp = api.post("/api/v1/aois", json=data)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


class StacServer:
    """A loopback HTTP server of JSON documents (``add`` one, get its URL)."""

    def __init__(self) -> None:
        documents: dict[str, bytes] = {}
        self.documents = documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = documents.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, document: Any) -> str:
        """Serve ``document`` as JSON at ``path``; its URL."""
        self.documents[path] = json.dumps(document).encode()
        return self.url + path

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stac_server() -> Iterator[StacServer]:
    """A loopback server of STAC documents."""
    server = StacServer()
    yield server
    server.close()
