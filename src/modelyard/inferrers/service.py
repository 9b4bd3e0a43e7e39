"""Calling a built-in inferrer synchronously on one input (uploaded, or fetched from a URL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard.context import AppContext
from modelyard.errors import NotFound, ValidationFailed
from modelyard.fetch import fetch
from modelyard.inferrers import builtin
from modelyard.inferrers.images import ImageLimits
from modelyard.inferrers.inputs import read_input
from modelyard.inferrers.onnx import bind_model


def describe() -> list[dict[str, Any]]:
    """The catalogue: each inferrer's name, summary, the data types it accepts, its output type and its
    parameters."""
    return [
        {
            "name": i.name,
            "summary": i.summary,
            "accepts": list(i.accepts),
            "produces": i.produces,
            "params": dict(i.params),
        }
        for i in builtin.CATALOG.values()
    ]


def check(name: str, params: Mapping[str, Any]) -> None:
    """``NotFound`` for an unknown inferrer, ``ValidationFailed`` listing every bad parameter."""
    if name not in builtin.CATALOG:
        raise NotFound(f"no inferrer {name!r} (known: {', '.join(builtin.CATALOG)})", field="name")
    problems = [
        {"field": f"params.{k}" if k else "params", "detail": d}
        for k, d in builtin.param_problems(name, params)
    ]
    if problems:
        raise ValidationFailed(f"{problems[0]['field']}: {problems[0]['detail']}", errors=problems)


def infer(ctx: AppContext, name: str, data: bytes, params: Mapping[str, Any]) -> dict[str, Any]:
    """Run inferrer ``name`` on ``data`` read as the first type it accepts (an encoded image, a ``.npy``
    array, JSON...); arrays come back as dtype, shape and data."""
    check(name, params)
    info = builtin.CATALOG[name]
    value = read_input(info.accepts[0], data, limits=ImageLimits.of(ctx.settings), draft_side=info.draft_side)
    predict = None
    body: dict[str, Any] = {"inferrer": name}
    if builtin.CATALOG[name].needs_model:
        predict, ref = bind_model(
            ctx.inference,
            params["model"],
            params.get("model_version", "latest"),
            input_name=params.get("input"),
            output_name=params.get("output"),
        )
        body["model"] = {"name": ref.name, "version": ref.version}
    [value] = builtin.run(name, [value], params, predict)
    if isinstance(value, np.ndarray):
        value = {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.tolist()}
    body["result"] = value
    return body


def infer_url(ctx: AppContext, name: str, url: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Fetch ``url`` (size, time and address bounded) and run inferrer ``name`` on it."""
    check(name, params)
    return infer(ctx, name, fetch(ctx, url).data, params)
