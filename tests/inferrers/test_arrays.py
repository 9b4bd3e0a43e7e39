"""Array statistics, and raw data read as what an inferrer accepts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from modelyard.errors import UndecodableInput
from modelyard.inferrers.arrays import array_stats
from modelyard.inferrers.inputs import read_input
from tests.inferrers.images import encode, noise


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([1, 2, 3], dtype=np.uint8), {"min": 1.0, "max": 3.0, "mean": 2.0}),
        (np.array([[0.5, np.nan], [np.inf, 1.5]]), {"min": 0.5, "max": 1.5, "mean": 1.0}),
        (np.array([True, False, True, True]), {"min": 0.0, "max": 1.0, "mean": 0.75}),
        (np.zeros((0, 3), dtype=np.float32), {"min": None, "max": None, "mean": None}),
        (np.array([np.nan, -np.inf]), {"min": None, "max": None, "mean": None}),
        (np.array(["a", "b"]), {"min": None, "max": None, "mean": None}),
    ],
)
def test_array_stats_over_finite_numbers_only(arr: np.ndarray, expected: dict[str, Any]) -> None:
    stats = array_stats(arr)
    assert stats == {"shape": list(arr.shape), "dtype": str(arr.dtype), "size": arr.size, **expected}


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_read_input_decodes_bytes_as_the_accepted_type() -> None:
    assert read_input("array", npy(np.arange(3))).tolist() == [0, 1, 2]
    assert read_input("array", [1, 2]).tolist() == [1, 2]
    assert read_input("json", b'{"a": 1}') == {"a": 1}
    assert read_input("json", {"a": 1}) == {"a": 1}
    assert read_input("image", encode(noise(0))).size == (64, 48)
    assert read_input("bytes", bytearray(b"x")) == b"x"


@pytest.mark.parametrize(
    ("accepts", "data", "fragment"),
    [
        ("array", b"not an array", "not a .npy file"),
        ("array", b"", "not a .npy file"),
        ("array", b"\x93NUMPY\x01\x00", "as an array"),
        ("json", b"{nope", "as JSON"),
        ("image", b"nope", "as an image"),
    ],
)
def test_read_input_refuses_bytes_that_are_not_the_accepted_type(
    accepts: str, data: bytes, fragment: str
) -> None:
    with pytest.raises(UndecodableInput, match=fragment):
        read_input(accepts, data)
