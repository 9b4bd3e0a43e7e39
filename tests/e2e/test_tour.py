"""The README's tour against a real `modelyard serve` process, driven by the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from websockets.sync.client import connect

from tests.e2e.serve import BIN, modelyard_serve
from tests.s3server import free_port

KEY = "tour-admin-key"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    env = {
        **os.environ,
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_DATABASE_URL": database_url,
        "MODELYARD_ADMIN_KEY": KEY,
        "MODELYARD_WORKER": "false",
    }
    with modelyard_serve(env, tmp_path / "server.log") as (url, _):
        yield url, {**env, "MODELYARD_URL": url, "MODELYARD_API_KEY": KEY}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "modelyard"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_tour_push_predict_rest_v2_websocket_metrics(
    server: tuple[str, dict[str, str]], model_dir: Path, tmp_path: Path
) -> None:
    url, env = server
    assert httpx.get(url + "/docs").status_code == 200
    listed = cli(env, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [m["name"] for m in json.loads(listed.stdout)] == ["demo-iris"]

    pushed = cli(
        env, "models", "push", str(model_dir / "logreg.onnx"), "--name", "churn", "--metadata", "task=churn"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "version 1" in pushed.stdout

    rows = np.random.default_rng(0).normal(size=(2, 20)).astype(np.float32)
    (tmp_path / "rows.json").write_text(json.dumps(rows.tolist()))
    predicted = cli(env, "predict", "churn", "--input", str(tmp_path / "rows.json"))
    assert predicted.returncode == 0, predicted.stderr
    rest = json.loads(predicted.stdout)
    assert len(rest["outputs"]["label"]) == 2

    with httpclient.InferenceServerClient(url.removeprefix("http://")) as triton:
        inp = httpclient.InferInput("X", [2, 20], "FP32")
        inp.set_data_from_numpy(rows, binary_data=True)
        result = triton.infer("churn", [inp], headers={"Authorization": f"Bearer {KEY}"})
    assert result.as_numpy("label").tolist() == rest["outputs"]["label"]

    with connect(url.replace("http", "ws") + f"/api/v1/models/churn/stream?api_key={KEY}") as ws:
        ws.send(json.dumps({"id": "a", "rows": rows.tolist()}))
        assert json.loads(ws.recv(timeout=10))["outputs"]["label"] == rest["outputs"]["label"]

    metrics = httpx.get(url + "/metrics").text
    for transport in ("rest", "v2", "websocket"):
        assert f'modelyard_predictions_total{{model="churn",transport="{transport}",version="1"}}' in metrics


def test_cli_exit_codes(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = server
    missing = cli(env, "models", "show", "nope")
    assert missing.returncode == 1
    assert "model-not-found" in missing.stderr
    bad = tmp_path / "x.txt"
    bad.write_text("1,2")
    assert cli(env, "predict", "demo-iris", "--input", str(bad)).returncode == 2
    unreachable = cli({**env, "MODELYARD_URL": f"http://127.0.0.1:{free_port()}"}, "models", "list")
    assert unreachable.returncode == 3
    key = cli(env, "keys", "create", "--name", "script", "--scope", "predict", "--no-local")
    assert key.returncode == 0 and key.stdout.startswith("my_")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_prints_the_url_it_listens_on_from_dot_env(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    (tmp_path / ".env").write_text(f"MODELYARD_PORT={port}\n")
    env = {**os.environ, "MODELYARD_DATABASE_URL": database_url, "MODELYARD_WORKER": "false"}
    env = {k: v for k, v in env.items() if k not in ("MODELYARD_PORT", "MODELYARD_HOST")}
    log = tmp_path / "server.log"
    with modelyard_serve(env, log, port=port, cwd=tmp_path, pass_port=False) as (url, _):
        assert httpx.get(url + "/", follow_redirects=False).headers["location"] == "/ui/"
        lines = log.read_text().splitlines()
    base = f"http://127.0.0.1:{port}"
    banner = f"modelyard on {base}: dashboard at {base}/ui, docs at {base}/docs"
    assert [line for line in lines if line.startswith("modelyard on ")] == [f"{banner} (data in data)"]
