"""The built-in inferrers: what raw data each accepts (``inputs.ACCEPTS``), what it produces and which
parameters it takes, and one entry point that runs any of them over a batch of inputs already read as what
it accepts (``inputs.read_input``). Pure (the model of ``features`` is passed in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.inferrers import features
from modelyard.inferrers.arrays import array_stats
from modelyard.inferrers.aspect import aspect_ratio
from modelyard.inferrers.inputs import ACCEPTS
from modelyard.inferrers.palette import MAX_SIDE, palette
from modelyard.inferrers.phash import phash
from modelyard.inferrers.tables import table_stats

MODEL_KEYS = {"model", "model_version", "input", "output"}


@dataclass(frozen=True, slots=True)
class InferrerInfo:
    """One built-in inferrer: the data types it accepts (its input is read as the first), and whether
    it produces ``json`` or an ``array``."""

    name: str
    summary: str
    produces: str
    params: Mapping[str, str] = field(default_factory=dict)
    needs_model: bool = False
    draft_side: int | None = None  # it shrinks images to this side anyway: JPEGs may decode at reduced scale
    accepts: tuple[str, ...] = ("image",)

    def __post_init__(self) -> None:
        unknown = [a for a in self.accepts if a not in ACCEPTS]
        if not self.accepts or unknown:
            raise ValueError(
                f"inferrer {self.name} accepts {unknown or 'nothing'} (known: {', '.join(ACCEPTS)})"
            )


CATALOG: dict[str, InferrerInfo] = {
    info.name: info
    for info in [
        InferrerInfo(
            "palette",
            "1,000-bin (10x10x10 RGB) L2-normalised colour histogram, average colour (hex), top-k colours",
            "json",
            {"top_k": "how many top colours to list (1..100, default 5)"},
            draft_side=MAX_SIDE,
        ),
        InferrerInfo("aspect_ratio", "width / height of the image as displayed", "json"),
        InferrerInfo("phash", "64-bit perceptual hash (hex), as imagehash.phash", "json"),
        InferrerInfo(
            "features",
            "L2-normalised float32 feature vector from a registered ONNX image model",
            "array",
            {
                "model": "registered model name (required)",
                "model_version": "version number or latest (default)",
                "input": "model input to feed (default: the first)",
                "output": "model output to read (default: the first)",
                "resize": "side or [height, width] (default 224)",
                "scale": "multiplier before normalising (default 1/255)",
                "mean": "per-channel mean (default ImageNet)",
                "std": "per-channel standard deviation (default ImageNet)",
                "layout": "NCHW (default) or NHWC",
                "mode": "RGB (default) or L",
            },
            needs_model=True,
        ),
        InferrerInfo(
            "array_stats",
            "shape, dtype, size, and min, max, mean of the finite numbers of an array",
            "json",
            accepts=("array",),
        ),
        InferrerInfo(
            "table_stats",
            "row count, and each column's name, type and null count of a table (Parquet, Arrow IPC or CSV)",
            "json",
            accepts=("table",),
        ),
    ]
}


def param_problems(name: str, params: Any) -> list[tuple[str, str]]:
    """Every problem of ``params`` for inferrer ``name`` as (parameter, detail); empty when valid."""
    info = CATALOG[name]
    if not isinstance(params, Mapping):
        return [("", "must be a mapping")]
    found = [
        (k, f"unknown parameter of {name} (known: {', '.join(sorted(info.params)) or 'none'})")
        for k in params
        if k not in info.params
    ]
    if name == "palette" and "top_k" in params:
        top_k = params["top_k"]
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 100:
            found.append(("top_k", "must be an integer 1..100"))
    if info.needs_model:
        if not isinstance(params.get("model"), str) or not params.get("model"):
            found.append(("model", "the name of a registered image model is required"))
        version = params.get("model_version", "latest")
        if not (
            version == "latest"
            or (isinstance(version, int) and not isinstance(version, bool) and version > 0)
        ):
            found.append(("model_version", "must be a version number or latest"))
        pre = {k: v for k, v in params.items() if k in features.KEYS}
        found += features.problems(pre)
    return found


def preprocess_of(params: Mapping[str, Any]) -> features.Preprocess:
    """The preprocessing the ``features`` parameters declare."""
    return features.Preprocess.from_params({k: v for k, v in params.items() if k in features.KEYS})


def run(
    name: str,
    values: Sequence[Any],
    params: Mapping[str, Any],
    predict: features.Predict | None = None,
) -> list[Any]:
    """Inferrer ``name`` over ``values`` (inputs of the type it accepts): one result per input (a JSON-able
    dict, or a float32 array)."""
    if name == "palette":
        return [palette(img, top_k=int(params.get("top_k", 5))) for img in values]
    if name == "aspect_ratio":
        return [aspect_ratio(img) for img in values]
    if name == "phash":
        return [phash(img) for img in values]
    if name == "features":
        if predict is None:
            raise ValueError("the features inferrer needs a model")
        return list(features.feature_vectors(values, preprocess_of(params), predict))
    if name == "array_stats":
        return [array_stats(arr) for arr in values]
    if name == "table_stats":
        return [table_stats(table) for table in values]
    raise KeyError(name)
