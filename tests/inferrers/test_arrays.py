"""Array and table statistics, and raw data read as what an inferrer accepts."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as paipc
import pyarrow.parquet as pq
import pytest

from modelyard.errors import UndecodableInput
from modelyard.inferrers.arrays import array_stats
from modelyard.inferrers.inputs import read_input
from modelyard.inferrers.tables import table_stats
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


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with paipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


@pytest.mark.parametrize("encode_table", [_parquet, _arrow, lambda t: b"a,b\n1,x\n2,\n"])
def test_read_input_reads_a_table_from_parquet_arrow_or_csv(encode_table: Any) -> None:
    table = pa.table({"a": pa.array([1, 2], pa.int64()), "b": pa.array(["x", None], pa.string())})
    found = read_input("table", encode_table(table))
    assert found.column_names == ["a", "b"] and found.column("a").to_pylist() == [1, 2]
    assert read_input("table", table) is table


def test_table_stats_counts_rows_and_nulls_per_column() -> None:
    table = pa.table({"n": [1.0, None, 3.0], "s": ["a", "b", None]})
    assert table_stats(table) == {
        "rows": 3,
        "columns": [{"name": "n", "type": "double", "nulls": 1}, {"name": "s", "type": "string", "nulls": 1}],
    }


@pytest.mark.parametrize(
    ("accepts", "data", "fragment"),
    [
        ("array", b"not an array", "not a .npy file"),
        ("array", b"", "not a .npy file"),
        ("array", b"\x93NUMPY\x01\x00", "as an array"),
        ("json", b"{nope", "as JSON"),
        ("image", b"nope", "as an image"),
        ("table", b"", "as a table: it is empty"),
        ("table", b"a,b\n1,2,3\n", "as a table"),
        ("table", b"PAR1 truncated", "as a table"),
        ("table", b"ARROW1 truncated", "as a table"),
    ],
)
def test_read_input_refuses_bytes_that_are_not_the_accepted_type(
    accepts: str, data: bytes, fragment: str
) -> None:
    with pytest.raises(UndecodableInput, match=fragment):
        read_input(accepts, data)
