"""Binding a registered ONNX model to a ``Predict`` (batch array in, batch array out) for image inferrers
and model stages: input and output chosen by name or defaulted to the first, fixed batch of 1 looped."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.inferrers.features import Predict
from modelyard.serving.service import InferenceService, VersionRef


def _pick(specs: list[dict[str, Any]], wanted: str | None, what: str, ref: VersionRef) -> dict[str, Any]:
    if not specs:
        raise InvalidInput(f"model {ref.name} v{ref.version} has no {what}s")
    if wanted is None:
        return specs[0]
    for spec in specs:
        if spec["name"] == wanted:
            return spec
    names = ", ".join(s["name"] for s in specs)
    raise InvalidInput(
        f"model {ref.name} v{ref.version} has no {what} {wanted!r} (it has {names})", field=what
    )


def bind_model(
    inference: InferenceService,
    model: str,
    version: int | str = "latest",
    *,
    input_name: str | None = None,
    output_name: str | None = None,
) -> tuple[Predict, VersionRef]:
    """A ``Predict`` running ``model`` (resolved now) and the version it resolved to."""
    ref = inference.resolve_sync(model, version)
    inp = _pick(ref.signature.get("inputs", []), input_name, "input", ref)
    out = _pick(ref.signature.get("outputs", []), output_name, "output", ref)
    shape = inp.get("shape") or []
    single = bool(shape) and shape[0] == 1

    def predict(batch: np.ndarray) -> np.ndarray:
        if single and len(batch) != 1:
            return np.concatenate([predict(batch[i : i + 1]) for i in range(len(batch))])
        result = inference.predict_sync(ref, {inp["name"]: batch})
        return np.asarray(result[out["name"]])

    return predict, ref
