"""``modelyard models`` against a live server: a push registers a new name with its first version, or
leaves nothing at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from modelyard.cli import app
from tests.conftest import ADMIN_KEY, LiveServer


def cli(server: LiveServer, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--url", server.url, "--api-key", ADMIN_KEY])


def _names(server: LiveServer) -> list[str]:
    listed = cli(server, "models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    return [m["name"] for m in json.loads(listed.stdout)]


def test_refused_push_of_a_new_name_leaves_no_model(
    live_server: LiveServer, model_dir: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    refused = cli(live_server, "models", "push", str(junk), "--name", "junk", "-m", "task=x")
    assert refused.exit_code == 1
    assert "invalid-model-file" in refused.output
    bomb = cli(live_server, "models", "push", str(model_dir / "bomb.onnx"), "--name", "bomb")
    assert bomb.exit_code == 1 and "ConstantOfShape" in bomb.output
    assert _names(live_server) == []


def test_push_of_a_new_name_registers_it_with_description_metadata_and_version_1(
    live_server: LiveServer, model_dir: Path
) -> None:
    mlp = str(model_dir / "mlp.onnx")
    args = ["--name", "mlp", "--description", "two layers", "-m", "task=classification", "-m", "k=3"]
    pushed = cli(live_server, "models", "push", mlp, *args)
    assert pushed.exit_code == 0, pushed.output
    assert "pushed mlp version 1" in pushed.output
    again = cli(live_server, "models", "push", mlp, "--name", "mlp", "-m", "k=4")
    assert again.exit_code == 0 and "version 2" in again.output
    junk_version = cli(live_server, "models", "push", str(model_dir / "bomb.onnx"), "--name", "mlp")
    assert junk_version.exit_code == 1
    shown = cli(live_server, "models", "show", "mlp")
    assert shown.exit_code == 0
    listed = json.loads(cli(live_server, "models", "list", "--json").stdout)
    assert [(m["name"], m["description"], len(m["versions"])) for m in listed] == [("mlp", "two layers", 2)]
    assert listed[0]["metadata"] == {"task": "classification", "k": 4}
