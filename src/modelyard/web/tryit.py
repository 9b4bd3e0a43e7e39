"""Try-it on an image: an uploaded image turned into the input of a model that takes one image batch.

The image is prepared as a pipeline's ``features`` stage prepares one (``inferrers.features``): resized,
scaled, normalised per channel and laid out NCHW or NHWC. The input's shape says the layout, the
channels and, where fixed, the height and width; the model's metadata ``preprocess`` (the same keys as a
stage's: resize, scale, mean, std, layout, mode) says the rest. Pure: no web framework.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.inferrers.features import Preprocess, preprocess, problems
from modelyard.inferrers.images import decode_image

CHANNELS = (1, 3)


def image_input_name(signature: Mapping[str, Any] | None) -> str | None:
    """The name of the model's input if it is one image batch (4-D with 1 or 3 channels), else None."""
    inputs = (signature or {}).get("inputs") or []
    if len(inputs) != 1 or len(inputs[0].get("shape") or []) != 4:
        return None
    shape = inputs[0]["shape"]
    return str(inputs[0]["name"]) if shape[1] in CHANNELS or shape[3] in CHANNELS else None


def _fixed(side: Any) -> int | None:
    return side if isinstance(side, int) and side > 0 else None


def image_params(shape: Sequence[Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing of an image for an input of ``shape``: the shape's layout, channels and fixed
    sides, then the metadata's ``preprocess`` (which may not contradict the shape's layout)."""
    nchw = shape[1] in CHANNELS
    channels, height, width = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    params: dict[str, Any] = {"layout": "NCHW" if nchw else "NHWC", "mode": "L" if channels == 1 else "RGB"}
    given = metadata.get("preprocess")
    params |= given if isinstance(given, Mapping) else {}
    if _fixed(height) and _fixed(width):  # the model decides: it takes no other size
        params["resize"] = [height, width]
    found = problems(params)
    if found:
        field, what = found[0]
        raise InvalidInput(f"the model's metadata.preprocess.{field} {what}", field="image")
    return params


def image_inputs(data: bytes, signature: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a prediction on the image in ``data``: ``{"inputs": {name: [image]}}``."""
    name = image_input_name(signature)
    if name is None:
        raise InvalidInput(
            "this model does not take an image: its input is not one image batch", field="image"
        )
    spec = Preprocess.from_params(image_params(signature["inputs"][0]["shape"], metadata))
    batch = preprocess([decode_image(data)], spec)
    return {"inputs": {name: batch.tolist()}}
