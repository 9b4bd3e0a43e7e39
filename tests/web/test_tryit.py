"""Try-it on an image: the input's shape and the model's metadata say how an image becomes its input;
the dashboard predicts on an uploaded image and shows the outputs."""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modelyard.errors import InvalidInput, UndecodableInput
from modelyard.web.tryit import image_input_name, image_inputs, image_params
from tests.onnx_models import image_embedder
from tests.web.conftest import api_headers, csrf_of, sign_in


def _signature(shape: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "FP32", "shape": shape}], "outputs": []}


def _png(rgb: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("shape", "name"),
    [
        ([-1, 3, -1, -1], "image"),
        (["batch", 1, 28, 28], "image"),
        ([-1, 64, 64, 3], "image"),
        ([-1, 4], None),  # a table
        ([-1, 5, 8, 8], None),  # five channels: not an image
    ],
)
def test_an_image_input_is_one_4d_batch_with_one_or_three_channels(
    shape: list[Any], name: str | None
) -> None:
    assert image_input_name(_signature(shape)) == name


@pytest.mark.parametrize(
    ("shape", "metadata", "expected"),
    [
        ([-1, 3, -1, -1], {}, {"layout": "NCHW", "mode": "RGB"}),
        ([-1, 1, 28, 28], {}, {"layout": "NCHW", "mode": "L", "resize": [28, 28]}),
        ([-1, 32, 48, 3], {}, {"layout": "NHWC", "mode": "RGB", "resize": [32, 48]}),
        # the metadata fills what the shape leaves open, but a fixed size is the model's
        (
            [-1, 3, -1, -1],
            {"preprocess": {"resize": [8, 8], "std": 1}},
            {"layout": "NCHW", "mode": "RGB", "resize": [8, 8], "std": 1},
        ),
        (
            [-1, 3, 16, 16],
            {"preprocess": {"resize": 8}},
            {"layout": "NCHW", "mode": "RGB", "resize": [16, 16]},
        ),
    ],
)
def test_image_params_come_from_the_shape_then_the_metadata(
    shape: list[Any], metadata: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert image_params(shape, metadata) == expected


def test_an_image_becomes_the_models_batch_of_one() -> None:
    body = image_inputs(_png((255, 0, 51)), _signature([-1, 3, 4, 6]), {"preprocess": {"mean": 0, "std": 1}})
    batch = np.asarray(body["inputs"]["image"], dtype=np.float32)
    assert batch.shape == (1, 3, 4, 6)
    assert np.allclose(batch[0, :, 0, 0], [1.0, 0.0, 0.2])


def test_what_cannot_become_an_image_input_is_a_bad_request() -> None:
    with pytest.raises(InvalidInput, match="does not take an image"):
        image_inputs(_png((0, 0, 0)), _signature([-1, 4]), {})
    with pytest.raises(InvalidInput, match=r"metadata\.preprocess\.std"):
        image_inputs(_png((0, 0, 0)), _signature([-1, 3, 4, 4]), {"preprocess": {"std": 0}})
    with pytest.raises(UndecodableInput):
        image_inputs(b"not an image", _signature([-1, 3, 4, 4]), {})


def test_try_it_predicts_on_an_uploaded_image(app_client: TestClient, tmp_path: Path) -> None:
    model = image_embedder(tmp_path / "embedder.onnx")
    made = app_client.post(
        "/api/v1/models",
        json={"name": "embedder", "metadata": {"preprocess": {"resize": [8, 8], "mean": 0, "std": 1}}},
        headers=api_headers(),
    )
    assert made.status_code == 201, made.text
    with model.open("rb") as f:
        pushed = app_client.post(
            "/api/v1/models/embedder/versions", files={"file": ("e.onnx", f)}, headers=api_headers()
        )
    assert pushed.status_code == 201, pushed.text
    sign_in(app_client)
    page = app_client.get("/ui/models/embedder")
    assert "Predict on the image" in page.text
    assert "Predict on the image" not in app_client.get("/ui/models/demo-iris").text  # a table model
    token = csrf_of(page.text)

    answer = app_client.post(
        "/ui/models/embedder/predict-image",
        data={"csrf": token},
        files={"image": ("red.png", _png((255, 0, 51)), "image/png")},
    )
    assert answer.status_code == 200, answer.text
    shown = html.unescape(re.search(r'<pre id="outputs">(.*?)</pre>', answer.text, re.S).group(1))  # type: ignore[union-attr]
    # the embedder's output is the channel means times its seeded weights
    weights = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    expected = np.array([1.0, 0.0, 0.2], dtype=np.float32) @ weights
    assert np.allclose(json.loads(shown)["outputs"]["embedding"][0], expected, atol=1e-4)
    assert "red.png" in answer.text

    broken = app_client.post(
        "/ui/models/embedder/predict-image",
        data={"csrf": token},
        files={"image": ("x.png", b"not an image", "image/png")},
    )
    assert broken.status_code == 422 and 'role="alert"' in broken.text
    refused = app_client.post(
        "/ui/models/embedder/predict-image", files={"image": ("red.png", _png((255, 0, 51)), "image/png")}
    )
    assert refused.status_code == 403
