"""Stage outputs encoded by kind, keyed by pipeline/stage/event."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from modelyard.pipelines.stages import outputs


@pytest.mark.parametrize(
    ("value", "declared", "kind", "ext"),
    [
        ({"a": 1}, "any", "json", "json"),
        ([1, 2], "json", "json", "json"),
        (np.arange(3, dtype=np.float32), "any", "array", "npy"),
        ([1.0, 2.0], "array", "array", "npy"),
        (np.float32(2.5), "json", "json", "json"),
        (Image.new("RGB", (2, 2)), "any", "image", "png"),
        (b"\xff\xd8\xff\xe0jpeg", "image", "image", "jpg"),
        (b"raw", "any", "bytes", "bin"),
        ("text", "bytes", "bytes", "bin"),
        (pa.table({"a": [1, 2], "b": ["x", None]}), "any", "table", "parquet"),
        (pa.table({"a": [1.5]}), "table", "table", "parquet"),
    ],
)
def test_values_encode_by_declared_or_actual_kind(value: Any, declared: str, kind: str, ext: str) -> None:
    enc = outputs.encode(value, declared)
    assert (enc.kind, enc.ext) == (kind, ext)
    back = outputs.decode(enc.kind, enc.data)
    if kind == "array":
        assert np.array_equal(back, np.asarray(value))
    if kind == "table":
        assert back.equals(value)


def test_a_table_output_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(TypeError, match="pyarrow Table"):
        outputs.encode({"a": [1]}, "table")


def test_small_json_is_kept_inline_and_big_json_is_not() -> None:
    assert outputs.encode({"n": 1}, inline_bytes=100).inline == {"n": 1}
    assert outputs.encode({"v": list(range(100))}, inline_bytes=100).inline is None


def test_object_arrays_are_refused() -> None:
    with pytest.raises(TypeError):
        outputs.encode(np.array([{}, 1], dtype=object), "array")


def test_keys() -> None:
    assert outputs.output_key("p", "s", "e1", "json") == "pipelines/p/s/e1.json"
    assert outputs.archive_key("pipelines/p/s/e1.json") == "archive/pipelines/p/s/e1.json"
    assert outputs.media_type("x/y.npy") == "application/x-npy"
    assert outputs.media_type("x/y.parquet") == "application/vnd.apache.parquet"
