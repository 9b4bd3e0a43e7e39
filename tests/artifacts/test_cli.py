"""``modelyard artifacts put|ls|get|rm`` against a live server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli import app
from tests.conftest import ADMIN_KEY, LiveServer

runner = CliRunner()


def test_put_ls_get_rm_round_trip(live_server: LiveServer, tmp_path: Path) -> None:
    env = {"MODELYARD_URL": live_server.url, "MODELYARD_API_KEY": ADMIN_KEY}
    data = b"sepal_length,sepal_width\n5.1,3.5\n" * 500
    (tmp_path / "flowers.csv").write_bytes(data)
    put = runner.invoke(
        app, ["artifacts", "put", str(tmp_path / "flowers.csv"), "batches/flowers.csv"], env=env
    )
    assert put.exit_code == 0, put.output
    assert f"stored batches/flowers.csv ({len(data)} bytes)" in put.output
    listed = runner.invoke(app, ["artifacts", "ls", "batches/", "--json"], env=env)
    assert [(i["key"], i["size"]) for i in json.loads(listed.stdout)] == [("batches/flowers.csv", len(data))]
    assert "batches/flowers.csv" in runner.invoke(app, ["artifacts", "ls"], env=env).stdout
    got = runner.invoke(
        app, ["artifacts", "get", "batches/flowers.csv", "-o", str(tmp_path / "back.csv")], env=env
    )
    assert got.exit_code == 0, got.output
    assert (tmp_path / "back.csv").read_bytes() == data
    removed = runner.invoke(app, ["artifacts", "rm", "batches/flowers.csv"], env=env)
    assert removed.exit_code == 0 and "deleted batches/flowers.csv" in removed.output
    assert json.loads(runner.invoke(app, ["artifacts", "ls", "--json"], env=env).stdout) == []


def test_refusals_exit_1_and_leave_nothing(live_server: LiveServer, tmp_path: Path) -> None:
    env = {"MODELYARD_URL": live_server.url, "MODELYARD_API_KEY": ADMIN_KEY}
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    own = runner.invoke(app, ["artifacts", "put", str(tmp_path / "x.onnx"), "models/x/1/model.onnx"], env=env)
    assert own.exit_code == 1 and "models/" in own.output
    missing = runner.invoke(
        app, ["artifacts", "get", "batches/none.csv", "-o", str(tmp_path / "none.csv")], env=env
    )
    assert missing.exit_code == 1 and "not-found" in missing.output
    assert not (tmp_path / "none.csv").exists() and not (tmp_path / "none.csv.part").exists()
    assert runner.invoke(app, ["artifacts", "rm", "batches/none.csv"], env=env).exit_code == 1
    assert json.loads(runner.invoke(app, ["artifacts", "ls", "--json"], env=env).stdout) == []
