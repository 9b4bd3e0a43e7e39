"""``modelyard sync DIR --pipeline P --once`` against a live server: files stored and submitted, a re-run
skips them, an unknown pipeline exits with the server's refusal."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from modelyard.cli import app
from tests.conftest import ADMIN_KEY, LiveServer

SPEC = 'name: scans\nraw: bytes\nstages:\n  size: {type: python, callable: "tests.pipelines.stages:size"}\n'


def sync(server: LiveServer, folder: Path, *extra: str) -> Result:
    args = ["sync", str(folder), "--once", "--settle", "0", *extra]
    return CliRunner().invoke(app, [*args, "--url", server.url, "--api-key", ADMIN_KEY])


def test_sync_once_from_the_command_line(live_server: LiveServer, tmp_path: Path) -> None:
    spec = tmp_path / "scans.yaml"
    spec.write_text(SPEC)
    applied = CliRunner().invoke(
        app, ["pipelines", "apply", str(spec), "--url", live_server.url, "--api-key", ADMIN_KEY]
    )
    assert applied.exit_code == 0, applied.output
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 100_000)
    (folder / "b.bin").write_bytes(b"b" * 10)

    first = sync(live_server, folder, "--pipeline", "scans", "--part-mib", "1")
    assert first.exit_code == 0, first.output
    assert "2 stored, 0 already there, 2 events submitted, 100010 bytes sent" in first.output
    again = sync(live_server, folder, "--pipeline", "scans")
    assert "0 stored, 2 already there, 0 events submitted" in again.output

    (folder / "c.bin").write_bytes(b"c")
    refused = sync(live_server, folder, "--pipeline", "nope")
    assert refused.exit_code == 1 and "pipeline-not-found" in refused.output
