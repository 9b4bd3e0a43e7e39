"""``modelyard aois`` and ``modelyard scenes`` against a live server (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.cli import app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.geo.conftest import s2_item, square


def test_aois_and_scenes_commands(sqlite_settings: Settings, tmp_path: Path) -> None:
    with LiveServer(create_app(sqlite_settings)) as server:

        def cli(*args: str) -> Any:
            return CliRunner().invoke(app, [*args, "--url", server.url, "--api-key", ADMIN_KEY])

        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        httpx.post(f"{server.url}/api/v1/models", json={"name": "fields"}, headers=headers).raise_for_status()
        bowtie = json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]})
        refused = cli("aois", "create", "x", "--geometry", bowtie, "--model", "fields", "--resolution", "10")
        assert refused.exit_code == 1
        assert "$.geometry.coordinates (self-intersection): self-intersection at 0.5,0.5" in refused.output
        shape = tmp_path / "vineyards.geojson"
        shape.write_text(
            json.dumps({"type": "Feature", "properties": {}, "geometry": square(5.2, 45.2, 0.5)})
        )
        made = cli(
            "aois", "create", "vineyards", "--geometry", str(shape), "--model", "fields",
            "--resolution", "10", "--wavelength", "0.665", "--tag", "wine",
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        assert "created AOI 1 vineyards" in made.output
        listed = cli("aois", "ls", "--tag", "wine")
        assert listed.exit_code == 0 and "vineyards" in listed.output and "1 of 1" in listed.output
        assert json.loads(cli("aois", "show", "1").stdout)["wavelengths"] == [0.665]

        item = tmp_path / "item.json"
        item.write_text(json.dumps(s2_item()))
        posted = cli("scenes", "post", str(item), "--explain")
        assert posted.exit_code == 0, posted.output
        assert "AOI 1 -> fields: run 1 queued" in posted.output and "1 run(s) queued" in posted.output
        again = cli("scenes", "post", str(item))
        assert "run 1 already queued" in again.output and "0 run(s) queued" in again.output
        assert "1 of 1" in cli("scenes", "ls", "--collection", "sentinel-2-l2a").output
        busy = cli("aois", "rm", "1")
        assert busy.exit_code == 1 and "active to false" in busy.output
