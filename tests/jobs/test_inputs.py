"""Input formats: detection, checks at submission, planning by streaming, reading one span."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import BadRequest, InvalidInput
from modelyard.jobs import inputs, readers
from modelyard.jobs.inputs import Features, Layout

F3 = Features("X", 3, np.dtype(np.float32), ["a", "b", "c"])
F3_UNNAMED = Features("X", 3, np.dtype(np.float32), None)


def read_all(path: Path, fmt: str, every: int, feats: Features = F3) -> inputs.Rows:
    layout = inputs.inspect(path, fmt, feats)
    parts = [readers.read_span(path, fmt, s, feats, layout) for s in inputs.plan(path, fmt, every, layout)]
    return inputs.Rows(
        np.concatenate([p.values for p in parts]) if parts else np.empty((0, 3)),
        np.concatenate([p.rows for p in parts]) if parts else np.empty(0, np.int64),
        [e for p in parts for e in p.errors],
    )


@pytest.mark.parametrize(
    ("name", "declared", "fmt"),
    [("x.CSV", None, "csv"), ("x.ndjson", None, "jsonl"), ("x.pq", None, "parquet"), ("x.bin", "npy", "npy")],
)
def test_detect_format_from_suffix_or_declared(name: str, declared: str | None, fmt: str) -> None:
    assert inputs.detect_format(name, declared) == fmt


def test_detect_format_refuses_unknown_suffix_and_format() -> None:
    with pytest.raises(BadRequest, match="cannot tell the format"):
        inputs.detect_format("x.xlsx")
    with pytest.raises(BadRequest, match="unknown input format"):
        inputs.detect_format("x.csv", "xlsx")


def test_features_need_one_2d_numeric_input() -> None:
    sig = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]}
    assert Features.from_signature(sig, {"columns": ["a", "b", "c"]}).columns == ["a", "b", "c"]
    assert Features.from_signature(sig, {"columns": ["a"]}).columns is None  # stale metadata is ignored
    with pytest.raises(InvalidInput, match="exactly one 2-D input"):
        Features.from_signature({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 224]}]}, {})
    with pytest.raises(InvalidInput, match="numeric"):
        Features.from_signature({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [-1, 2]}]}, {})


def test_csv_with_bom_crlf_blank_lines_and_quotes_reads_every_row_once(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'\xef\xbb\xbfa,b,c\r\n1,2,3\r\n\r\n4,"5",6\r\n"7","8\n",9\r\n10,11,12')
    layout = inputs.inspect(path, "csv", F3)
    assert layout == Layout(header=["a", "b", "c"], fields=3)
    got = read_all(path, "csv", 2)
    assert got.values.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    assert got.rows.tolist() == [0, 1, 2, 3]
    assert got.errors == []


def test_csv_header_orders_columns_by_model_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("c,a,b,extra\n3,1,2,9\n")
    assert read_all(path, "csv", 10).values.tolist() == [[1, 2, 3]]


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        (b"", BadRequest, "empty"),
        (b"a,b,c\n", BadRequest, "no rows"),
        (b"1,2\n3,4\n", InvalidInput, "2 columns, the model expects 3"),
        (b"x,y,z,w\n1,2,3,4\n", InvalidInput, "lacks column(s)"),
    ],
)
def test_csv_structure_is_checked_at_submission(
    tmp_path: Path, content: bytes, error: type[Exception], fragment: str
) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(error) as info:
        inputs.inspect(path, "csv", F3)
    assert fragment in str(info.value)


@given(
    rows=st.lists(st.lists(st.integers(-1000, 1000), min_size=3, max_size=3), min_size=1, max_size=60),
    every=st.integers(1, 17),
    header=st.booleans(),
    crlf=st.booleans(),
    blank_every=st.integers(0, 5),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_spans_cover_every_row_exactly_once(
    tmp_path: Path, rows: list[list[int]], every: int, header: bool, crlf: bool, blank_every: int
) -> None:
    end = "\r\n" if crlf else "\n"
    lines = ["a,b,c"] if header else []
    for i, row in enumerate(rows):
        lines.append(",".join(f'"{v}"' if v % 3 == 0 else str(v) for v in row))
        if blank_every and i % blank_every == 0:
            lines.append("")
    path = tmp_path / "p.csv"
    path.write_text(end.join(lines), newline="")
    got = read_all(path, "csv", every, F3 if header else F3_UNNAMED)
    assert got.values.tolist() == rows
    assert got.rows.tolist() == list(range(len(rows)))


def test_jsonl_objects_need_model_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a":1,"b":2,"c":3}\n')
    with pytest.raises(InvalidInput, match=r"metadata\.columns"):
        inputs.inspect(path, "jsonl", F3_UNNAMED)


def test_npy_reads_ranges_through_a_memory_map(tmp_path: Path) -> None:
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    np.save(tmp_path / "x.npy", x)
    got = read_all(tmp_path / "x.npy", "npy", 4)
    assert got.values.dtype == np.float32
    np.testing.assert_array_equal(got.values, x)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.array([["a", "b", "c"]]), "dtype <U1, the model expects float32"),
        (np.zeros((2, 4), np.float32), "4 columns, the model expects 3"),
        (np.zeros(3, np.float32), "1 dimension(s)"),
        (np.zeros((2, 3), np.complex64), "dtype complex64"),
    ],
)
def test_npy_wrong_dtype_or_shape_is_refused(tmp_path: Path, array: np.ndarray, fragment: str) -> None:
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(InvalidInput) as info:
        inputs.inspect(tmp_path / "x.npy", "npy", F3)
    assert fragment in str(info.value)


def test_parquet_string_column_is_a_wrong_dtype(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": ["x"], "b": [1.0], "c": [2.0]}), tmp_path / "x.parquet")
    with pytest.raises(InvalidInput, match="column 'a' has dtype string"):
        inputs.inspect(tmp_path / "x.parquet", "parquet", F3)
