"""Reading one span: good rows in the model's dtype, every malformed row listed with its number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.jobs.test_inputs import F3_UNNAMED, read_all


def test_csv_malformed_rows_are_listed_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,x,6\n7,8\n,1,2\n10,11,12\n")
    got = read_all(path, "csv", 3)
    assert got.rows.tolist() == [0, 4]
    assert [row for row, _ in got.errors] == [1, 2, 3]
    messages = " | ".join(msg for _, msg in got.errors)
    assert "row 1: column 'b' is not a number: 'x'" in messages
    assert "row 2: expected 3 fields, got 2" in messages
    assert "row 3: column 'a' is empty" in messages


def test_jsonl_arrays_and_objects_with_bad_lines_listed(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('[1,2,3]\n{"a":4,"b":5,"c":6}\n\n[1,2]\nnot json\n{"a":1}\n["1",2,3]\n[7,8,9]')
    got = read_all(path, "jsonl", 4)
    assert got.values.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert got.rows.tolist() == [0, 1, 6]
    assert [(row, msg.split(":")[1].strip()) for row, msg in got.errors] == [
        (2, "expected 3 values, got 2"),
        (3, "not valid JSON"),
        (4, "lacks column(s) ['b', 'c']"),
        (5, "column 'a' is not a number"),
    ]


def test_parquet_spans_cross_row_groups_and_nulls_are_malformed_rows(tmp_path: Path) -> None:
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    c = [None if i == 5 else v for i, v in enumerate(x[:, 2].tolist())]
    pq.write_table(pa.table({"b": x[:, 1], "a": x[:, 0], "c": c}), tmp_path / "x.parquet", row_group_size=3)
    got = read_all(tmp_path / "x.parquet", "parquet", 4)
    assert got.rows.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    np.testing.assert_array_equal(got.values, np.delete(x, 5, axis=0))
    assert got.errors == [(5, "row 5: column 'c' is missing")]


def test_parquet_single_list_column_is_the_feature_vector(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    pq.write_table(
        pa.table({"features": pa.array(x.tolist(), pa.list_(pa.float32()))}), tmp_path / "x.parquet"
    )
    np.testing.assert_array_equal(read_all(tmp_path / "x.parquet", "parquet", 3, F3_UNNAMED).values, x)
