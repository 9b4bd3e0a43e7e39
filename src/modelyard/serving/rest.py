"""The simple REST prediction format: ``{"inputs": {name: nested list}}`` or ``{"rows": [...]}``.

Pure: JSON-like values in, numpy arrays out, and back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.dtypes import numpy_of
from modelyard.errors import InvalidInput


def decode_inputs(
    body: dict[str, Any], signature: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Arrays from a REST body; ``rows`` feed the model's single 2-D input, columns ordered per metadata."""
    if not isinstance(body, dict) or ("inputs" in body) == ("rows" in body):
        raise InvalidInput('send exactly one of "inputs" (by input name) or "rows" (tabular)', field="inputs")
    specs = {s["name"]: s for s in signature["inputs"]}
    if "rows" in body:
        return {_single_input(signature): rows_to_array(body["rows"], signature, metadata)}
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        raise InvalidInput('"inputs" must be an object of input name to array', field="inputs")
    out = {}
    for name, value in inputs.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidInput(
                f"unknown input {name!r}; the model takes {list(specs)}", field=f"inputs.{name}"
            )
        try:
            arr = np.asarray(value, dtype=numpy_of(spec["datatype"]))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"input {name!r} is not a regular numeric array: {exc}", field=f"inputs.{name}"
            ) from exc
        out[name] = arr
    return out


def _single_input(signature: dict[str, Any]) -> str:
    ins = signature["inputs"]
    if len(ins) != 1 or len(ins[0]["shape"]) != 2:
        raise InvalidInput('"rows" needs a model with one 2-D input; use "inputs" instead', field="rows")
    return str(ins[0]["name"])


def rows_to_array(rows: Any, signature: dict[str, Any], metadata: dict[str, Any]) -> np.ndarray:
    """A 2-D array from rows given as lists, or as objects keyed by the metadata's ``columns``."""
    spec = signature["inputs"][0]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('"rows" must be a non-empty list', field="rows")
    columns = metadata.get("columns")
    if isinstance(rows[0], dict):
        if not isinstance(columns, list):
            raise InvalidInput(
                "rows given as objects need the model's metadata.columns to order them", field="rows"
            )
        try:
            rows = [[row[c] for c in columns] for row in rows]
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"a row lacks column {exc}; columns are {columns}", field="rows") from exc
    try:
        arr = np.asarray(rows, dtype=numpy_of(spec["datatype"]))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"rows are not a regular numeric table: {exc}", field="rows") from exc
    if arr.ndim != 2:
        raise InvalidInput(f"rows must form a 2-D table, got {arr.ndim} dimension(s)", field="rows")
    return arr


def encode_outputs(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON-ready outputs: nested lists (bytes decoded as UTF-8)."""
    out: dict[str, Any] = {}
    for name, arr in outputs.items():
        if arr.dtype == np.object_:
            out[name] = (
                np.vectorize(
                    lambda v: v.decode(errors="replace") if isinstance(v, bytes) else v, otypes=[object]
                )(arr).tolist()
                if arr.size
                else arr.tolist()
            )
        else:
            out[name] = arr.tolist()
    return out
