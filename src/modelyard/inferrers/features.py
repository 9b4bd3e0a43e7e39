"""Feature vectors from an image model: images resized and normalised as a stage spec declares, run
through a model (any callable from a batch array to a batch array), L2-normalised, float32.

Pure: the model is passed in as ``Predict``; ``onnx.bind_model`` builds one from a registered model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

Predict = Callable[[np.ndarray], np.ndarray]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KEYS = {"resize", "scale", "mean", "std", "layout", "mode"}


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How an image becomes a model input: resize to ``size`` (height, width), multiply by ``scale``,
    subtract ``mean`` and divide by ``std`` per channel, lay out as NCHW or NHWC, float32."""

    size: tuple[int, int] = (224, 224)
    scale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    layout: str = "NCHW"
    mode: str = "RGB"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Preprocess:
        """Build from a stage spec's ``preprocess`` mapping (call ``problems`` first)."""
        resize = params.get("resize", 224)
        size = (int(resize), int(resize)) if isinstance(resize, int) else (int(resize[0]), int(resize[1]))
        channels = 1 if params.get("mode", "RGB") == "L" else 3
        mean = _channels(params.get("mean", IMAGENET_MEAN if channels == 3 else (0.5,)), channels)
        std = _channels(params.get("std", IMAGENET_STD if channels == 3 else (0.5,)), channels)
        return cls(
            size=size,
            scale=float(params.get("scale", 1 / 255)),
            mean=mean,
            std=std,
            layout=str(params.get("layout", "NCHW")),
            mode=str(params.get("mode", "RGB")),
        )


def _channels(values: Any, channels: int) -> tuple[float, ...]:
    seq = [float(values)] if isinstance(values, int | float) else [float(v) for v in values]
    return tuple(seq * channels) if len(seq) == 1 else tuple(seq)


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def problems(params: Any) -> list[tuple[str, str]]:
    """Every problem of a ``preprocess`` mapping, as (sub-field, detail) pairs; empty when valid."""
    if not isinstance(params, Mapping):
        return [("", "must be a mapping of resize, scale, mean, std, layout, mode")]
    found = [
        (k, f"unknown preprocess field (known: {', '.join(sorted(KEYS))})") for k in params if k not in KEYS
    ]
    resize = params.get("resize", 224)
    ok_resize = (isinstance(resize, int) and not isinstance(resize, bool) and 1 <= resize <= 4096) or (
        _numbers(resize) and len(resize) == 2 and all(isinstance(v, int) and 1 <= v <= 4096 for v in resize)
    )
    if not ok_resize:
        found.append(("resize", "must be a side length or [height, width], each 1..4096"))
    mode = params.get("mode", "RGB")
    if mode not in ("RGB", "L"):
        found.append(("mode", "must be RGB or L"))
    channels = 1 if mode == "L" else 3
    for key in ("mean", "std"):
        if key in params:
            value = params[key]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = [value]
            if not _numbers(value) or len(value) not in (1, channels):
                found.append((key, f"must be a number or {channels} numbers"))
            elif key == "std" and any(v == 0 for v in value):
                found.append((key, "must not be zero"))
    scale = params.get("scale", 1 / 255)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale <= 0:
        found.append(("scale", "must be a positive number"))
    if params.get("layout", "NCHW") not in ("NCHW", "NHWC"):
        found.append(("layout", "must be NCHW or NHWC"))
    return found


def preprocess(images: Sequence[Image.Image], spec: Preprocess) -> np.ndarray:
    """A float32 batch of ``images`` laid out as ``spec`` says."""
    return normalised(resized(images, spec), spec)


def resized(images: Sequence[Image.Image], spec: Preprocess) -> np.ndarray:
    """``images`` in ``spec``'s mode and size, as one uint8 batch [N, height, width, channels] (the part
    of ``preprocess`` done image by image)."""
    height, width = spec.size
    arrays = []
    for img in images:
        same = img if img.mode == spec.mode else img.convert(spec.mode)  # convert() to its own mode copies
        arrays.append(
            np.asarray(same.resize((width, height), Image.Resampling.BILINEAR)).reshape(height, width, -1)
        )
    return np.stack(arrays)


def normalised(batch: np.ndarray, spec: Preprocess) -> np.ndarray:
    """A ``resized`` batch scaled, normalised per channel and laid out as ``spec`` says, float32 (the
    same float32 operations, value by value, as one image at a time)."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (batch.astype(np.float32) * np.float32(spec.scale) - mean) / std
    return x.transpose(0, 3, 1, 2).copy() if spec.layout == "NCHW" else x


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (flattened past the batch axis) scaled to unit L2 norm, float32; zero rows stay zero."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    out: np.ndarray = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0).astype(np.float32)
    return out


def feature_vectors(images: Sequence[Image.Image], spec: Preprocess, predict: Predict) -> np.ndarray:
    """The L2-normalised float32 feature vector of each image, shape [len(images), dim]."""
    return l2_normalise(predict(preprocess(images, spec)))
