"""The V2 inference protocol, driven by the stock tritonclient (sync and async, JSON and binary)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from tests.conftest import ADMIN_KEY, LiveServer, push_model, sqlite_only

pytestmark = sqlite_only  # the protocol; registry reads run on both databases in test_rest

# the stock clients add their own headers to the dict they are given, so each call gets a copy
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def served(client: TestClient, model_dir: Path, live_server: LiveServer) -> str:
    push_model(client, model_dir / "logreg.onnx", "logreg")
    push_model(client, model_dir / "types.onnx", "types")
    push_model(client, model_dir / "image.onnx", "image")
    return live_server.url.removeprefix("http://")


def _raw(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds))


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_sync_infer_matches_raw_session(served: str, model_dir: Path, binary: bool) -> None:
    x = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    with httpclient.InferenceServerClient(served) as triton:
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = triton.infer("logreg", [inp], outputs=outs, headers=dict(AUTH), request_id="r-1")
    label, proba = _raw(model_dir / "logreg.onnx", {"X": x})
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba, rtol=1e-6)
    assert result.get_response()["id"] == "r-1"
    assert result.get_response()["model_version"] == "1"


async def test_tritonclient_async_infer_binary_and_json(served: str, model_dir: Path) -> None:
    x = np.ones((2, 20), np.float32)
    triton = aioclient.InferenceServerClient(served)
    try:
        for binary in (True, False):
            inp = aioclient.InferInput("X", [2, 20], "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            result = await triton.infer("logreg", [inp], headers=dict(AUTH))
            np.testing.assert_array_equal(
                result.as_numpy("label"), _raw(model_dir / "logreg.onnx", {"X": x})[0]
            )
        assert await triton.is_server_live()
        assert await triton.is_model_ready("logreg", headers=dict(AUTH))
    finally:
        await triton.close()


@pytest.mark.parametrize("binary", [False, True])
def test_all_datatypes_round_trip_fp16_bool_int64_bytes(served: str, binary: bool) -> None:
    feeds = {
        "fp16": np.array([[1.5, -2.25], [0.0, 65504]], np.float16),
        "flag": np.array([[True, False], [False, True]]),
        "count": np.array([[1, -(2**40)], [7, 0]], np.int64),
        "text": np.array([[b"caf\xc3\xa9", b"x"], [b"", b"hello"]], dtype=np.object_),
    }
    kinds = {"fp16": "FP16", "flag": "BOOL", "count": "INT64", "text": "BYTES"}
    with httpclient.InferenceServerClient(served) as triton:
        inputs = []
        for name, arr in feeds.items():
            inp = httpclient.InferInput(name, list(arr.shape), kinds[name])
            inp.set_data_from_numpy(arr, binary_data=binary)
            inputs.append(inp)
        outs = [httpclient.InferRequestedOutput(f"{n}_out", binary_data=binary) for n in feeds]
        result = triton.infer("types", inputs, outputs=outs, headers=dict(AUTH))
    for name, arr in feeds.items():
        got = result.as_numpy(f"{name}_out")
        assert got.shape == arr.shape
        if name == "text" and not binary:  # the client hands JSON strings back as str
            arr = np.vectorize(lambda b: b.decode(), otypes=[object])(arr)
        np.testing.assert_array_equal(got, arr)


def test_metadata_ready_and_server_metadata(served: str) -> None:
    with httpclient.InferenceServerClient(served) as triton:
        assert triton.is_server_live() and triton.is_server_ready()
        assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
        meta = triton.get_model_metadata("logreg", headers=dict(AUTH))
        assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}]
        assert meta["versions"] == ["1"]
        assert triton.is_model_ready("logreg", headers=dict(AUTH))
        assert not triton.is_model_ready("missing", headers=dict(AUTH))


def test_repository_index_load_unload(served: str) -> None:
    with httpclient.InferenceServerClient(served) as triton:
        triton.load_model("image", headers=dict(AUTH))
        ready = {
            m["name"] for m in triton.get_model_repository_index(headers=dict(AUTH)) if m["state"] == "READY"
        }
        assert ready == {"image"}
        triton.unload_model("image", headers=dict(AUTH))
        states = {m["name"]: m["state"] for m in triton.get_model_repository_index(headers=dict(AUTH))}
        assert states == {"logreg": "UNAVAILABLE", "types": "UNAVAILABLE", "image": "UNAVAILABLE"}


def test_unloaded_model_is_not_ready_until_loaded_again(served: str) -> None:
    with httpclient.InferenceServerClient(served) as triton:
        assert triton.is_model_ready("image")
        triton.unload_model("image", headers=dict(AUTH))
        assert not triton.is_model_ready("image")
        assert not triton.is_model_ready("image", model_version="1")
        assert triton.is_model_ready("logreg")  # other models are unaffected
        triton.load_model("image", headers=dict(AUTH))
        assert triton.is_model_ready("image")


def test_model_ready_needs_no_key_but_metadata_names_the_scope_it_needs(served: str) -> None:
    with httpclient.InferenceServerClient(served) as triton:
        assert triton.is_model_ready("logreg")
        assert not triton.is_model_ready("missing")
        with pytest.raises(InferenceServerException) as caught:
            triton.get_model_metadata("logreg")
    assert "'read' scope" in str(caught.value)


def test_binary_image_tensor(served: str, model_dir: Path) -> None:
    img = np.random.default_rng(2).random((1, 3, 224, 224), dtype=np.float32)
    with httpclient.InferenceServerClient(served) as triton:
        inp = httpclient.InferInput("image", [1, 3, 224, 224], "FP32")
        inp.set_data_from_numpy(img, binary_data=True)
        result = triton.infer("image", [inp], headers=dict(AUTH))
    np.testing.assert_allclose(
        result.as_numpy("features"), _raw(model_dir / "image.onnx", {"image": img})[0], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("shape", "dtype", "fragment"),
    [([1, 19], "FP32", "shape"), ([1, 20], "BYTES", "dtype")],
)
def test_mismatch_is_400_with_spec_error_body(
    served: str, shape: list[int], dtype: str, fragment: str
) -> None:
    with httpclient.InferenceServerClient(served) as triton:
        inp = httpclient.InferInput("X", shape, dtype)
        data = np.zeros(shape, np.float32) if dtype == "FP32" else np.full(shape, b"a", dtype=np.object_)
        inp.set_data_from_numpy(data, binary_data=False)
        with pytest.raises(InferenceServerException) as info:
            triton.infer("logreg", [inp], headers=dict(AUTH))
    assert info.value.status() == "400"
    assert fragment in info.value.message()


def test_unknown_model_and_missing_input(client: TestClient, served: str) -> None:
    resp = client.post("/v2/models/nope/infer", json={"inputs": []})
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}
    resp = client.post("/v2/models/logreg/infer", json={"inputs": []})
    assert resp.status_code == 400
    assert "missing input" in resp.json()["error"]


def test_infer_needs_predict_scope(client: TestClient, served: str) -> None:
    resp = client.post("/v2/models/logreg/infer", json={"inputs": []}, headers={"Authorization": ""})
    assert resp.status_code == 401
    assert "error" in resp.json()


def test_v2_predictions_show_in_metrics(client: TestClient, served: str) -> None:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": [0.0] * 20}]}
    assert client.post("/v2/models/logreg/infer", json=body).status_code == 200
    assert (
        'modelyard_predictions_total{model="logreg",transport="v2",version="1"} 1.0'
        in client.get("/metrics").text
    )


@pytest.mark.parametrize(
    ("encoding", "body", "fragment"),
    [
        ("gzip", b'{"inputs": []}', "not valid gzip data"),
        ("deflate", b'{"inputs": []}', "not valid deflate data"),
        ("gzip", gzip.compress(b'{"inputs": []}', mtime=0)[:-12], "truncated"),
        ("deflate", zlib.compress(b'{"inputs": []}')[:5], "truncated"),
    ],
)
def test_body_labelled_compressed_that_is_not_is_400(
    client: TestClient, model_dir: Path, encoding: str, body: bytes, fragment: str
) -> None:
    push_model(client, model_dir / "logreg.onnx", "logreg")
    resp = client.post(
        "/v2/models/logreg/infer",
        content=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["error"]


def test_compressed_body_is_decoded(client: TestClient, model_dir: Path) -> None:
    push_model(client, model_dir / "logreg.onnx", "logreg")
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": [0.0] * 20}]}
    resp = client.post(
        "/v2/models/logreg/infer",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
