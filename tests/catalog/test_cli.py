"""``modelyard catalog switch | rollback | reinfer-status | reinfer-cancel | export`` against a live
server: a producer whose values come from outside (two versions stored) switched and rolled back, the
collection exported, and refusals as exit code 1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.cli import app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def server(private_settings: Settings) -> Iterator[Any]:
    """A live server with collection ``works``: three records, ``tagger`` values at versions 1 and 2."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        LiveServer(create_app(private_settings)) as live,
        httpx.Client(base_url=live.url, headers=headers) as http,
    ):
        http.post("/api/v1/collections", json={"name": "works"}).raise_for_status()
        for i in range(3):
            http.post("/api/v1/collections/works/records", json={"id": f"w{i}"}).raise_for_status()
            for version in ("1", "2"):
                values = {"label": f"v{version}-{i}"}
                path = f"/api/v1/collections/works/records/w{i}/inferences/tagger/{version}"
                http.put(path, json=values).raise_for_status()
        live.http = http
        yield live


def run(server: Any, *args: str) -> Any:
    return CliRunner().invoke(app, ["catalog", *args, "--url", server.url, "--api-key", ADMIN_KEY])


def label(server: Any, rid: str) -> str:
    got: str = server.http.get(f"/api/v1/collections/works/records/{rid}").json()["inferred"]["tagger"][
        "label"
    ]
    return got


def test_switch_status_and_rollback(server: Any) -> None:
    assert label(server, "w0") == "v1-0"  # the first version stored is current
    switched = run(server, "switch", "works", "tagger", "2", "--wait")
    assert switched.exit_code == 0, switched.output
    assert "1 -> 2  succeeded  3/3 records" in switched.output
    assert label(server, "w0") == "v2-0"
    status = run(server, "reinfer-status", "works")
    assert status.exit_code == 0 and "tagger" in status.output and "succeeded" in status.output
    back = run(server, "rollback", "works", "tagger")
    assert back.exit_code == 0 and "1 is current (was 2)" in back.output
    assert label(server, "w2") == "v1-2"
    refused = run(server, "switch", "works", "tagger", "7")
    assert refused.exit_code == 1 and "version 7" in refused.output
    unknown = run(server, "reinfer-cancel", "works", "nope")
    assert unknown.exit_code == 1


def test_export_writes_jsonl_and_parquet(server: Any, tmp_path: Path) -> None:
    out = tmp_path / "works.jsonl"
    result = run(server, "export", "works", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["inferred"]["tagger"]["label"]) for r in rows] == [
        (f"w{i}", f"v1-{i}") for i in range(3)
    ]
    pq_out = tmp_path / "some.parquet"
    query = json.dumps({"filter": {"field": "tagger.label", "op": "in", "value": ["v1-1"]}})
    result = run(server, "export", "works", "-o", str(pq_out), "--query", query)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in pq.read_table(io.BytesIO(pq_out.read_bytes())).to_pylist()] == ["w1"]
    bad = run(
        server, "export", "works", "-o", str(tmp_path / "x.jsonl"), "--query", '{"filter": {"field": "no"}}'
    )
    assert bad.exit_code == 1 and "unknown field" in bad.output
    assert not (tmp_path / "x.jsonl").exists()
    assert run(server, "export", "works", "-o", str(tmp_path / "x.csv")).exit_code == 2
