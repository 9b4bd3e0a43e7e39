from __future__ import annotations

import numpy as np
import pytest

from modelyard.inferrers import builtin
from modelyard.inferrers.features import Preprocess, feature_vectors, l2_normalise, preprocess, problems
from tests.inferrers.images import noise, solid


def test_preprocess_resizes_scales_and_normalises_nchw() -> None:
    spec = Preprocess(size=(8, 6), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    batch = preprocess([solid((255, 0, 127)), noise(1)], spec)
    assert batch.shape == (2, 3, 8, 6)
    assert batch.dtype == np.float32
    assert batch[0, 0].mean() == pytest.approx(1.0)
    assert batch[0, 1].mean() == pytest.approx(-1.0)


def test_nhwc_and_greyscale_layouts() -> None:
    spec = Preprocess.from_params(
        {"resize": [4, 5], "layout": "NHWC", "mode": "L", "mean": 0, "std": 1, "scale": 1}
    )
    batch = preprocess([solid((100, 100, 100))], spec)
    assert batch.shape == (1, 4, 5, 1)
    assert batch[0, 0, 0, 0] == pytest.approx(100.0)


def test_l2_normalise_rows_and_leaves_zero_rows() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_feature_vectors_run_the_model_on_the_preprocessed_batch() -> None:
    seen = []

    def model(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x.mean(axis=(2, 3))

    out = feature_vectors(
        [solid((255, 0, 0)), solid((0, 0, 255))],
        Preprocess(size=(4, 4), mean=(0, 0, 0), std=(1, 1, 1)),
        model,
    )
    assert seen == [(2, 3, 4, 4)]
    assert out.shape == (2, 3)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert out[0].argmax() == 0 and out[1].argmax() == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"resize": 0}, "resize"),
        ({"mean": [1, 2]}, "mean"),
        ({"std": 0}, "std"),
        ({"layout": "CHW"}, "layout"),
        ({"zoom": 2}, "zoom"),
        ({"scale": -1}, "scale"),
    ],
)
def test_preprocess_problems_name_the_field(params: dict[str, object], field: str) -> None:
    assert field in [f for f, _ in problems(params)]


def test_catalog_runs_every_image_inferrer() -> None:
    imgs = [solid((1, 2, 3)), noise(0)]
    assert [r["aspect_ratio"] for r in builtin.run("aspect_ratio", imgs, {})] == [2.0, 1.333333]
    assert len(builtin.run("palette", imgs, {"top_k": 2})[1]["top"]) == 2
    assert len(builtin.run("phash", imgs, {})) == 2
    vectors = builtin.run("features", imgs, {"resize": 8}, predict=lambda x: x.reshape(len(x), -1)[:, :5])
    assert vectors[0].shape == (5,) and vectors[0].dtype == np.float32


def test_an_inferrer_must_accept_known_data_types() -> None:
    with pytest.raises(ValueError, match="accepts \\['video'\\]"):
        builtin.InferrerInfo("clip", "", "json", accepts=("image", "video"))
    with pytest.raises(ValueError, match="accepts nothing"):
        builtin.InferrerInfo("void", "", "json", accepts=())


def test_catalog_param_problems() -> None:
    assert builtin.param_problems("phash", {"x": 1})[0][0] == "x"
    assert [f for f, _ in builtin.param_problems("features", {"model_version": "new"})] == [
        "model",
        "model_version",
    ]
    assert builtin.param_problems("features", {"model": "m", "resize": [4, 4]}) == []
