"""Chunk tables and results streamed as Parquet, CSV and JSONL."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelyard.jobs import outputs


def tables() -> list[pa.Table]:
    label = np.array([1, 0, 1], np.int64)
    proba = np.array([[0.25, 0.75], [0.5, 0.5], [0.125, 0.875]], np.float32)
    first = outputs.chunk_table(np.array([0, 1, 2]), {"label": label, "probabilities": proba})
    second = outputs.chunk_table(np.array([4]), {"label": label[:1], "probabilities": proba[:1]})
    return [first, second]


def test_chunk_table_has_row_numbers_scalars_and_fixed_size_lists() -> None:
    table = tables()[0]
    assert table.column_names == ["row", "label", "probabilities"]
    assert pa.types.is_fixed_size_list(table.schema.field("probabilities").type)
    back = pq.read_table(io.BytesIO(outputs.table_bytes(table)))
    assert back.equals(table)


def test_parquet_stream_is_one_file_with_every_chunk_in_order() -> None:
    data = b"".join(outputs.stream(tables(), "parquet"))
    back = pq.read_table(io.BytesIO(data))
    assert back.column("row").to_pylist() == [0, 1, 2, 4]
    assert back.column("probabilities").to_pylist()[3] == [0.25, 0.75]


def test_csv_stream_spreads_lists_over_columns_with_one_header() -> None:
    data = b"".join(outputs.stream(tables(), "csv"))
    assert data.count(b"row") == 1
    back = pacsv.read_csv(io.BytesIO(data))
    assert back.column_names == ["row", "label", "probabilities_0", "probabilities_1"]
    assert back.column("probabilities_1").to_pylist() == [0.75, 0.5, 0.875, 0.75]


def test_jsonl_stream_is_one_object_per_row() -> None:
    lines = b"".join(outputs.stream(tables(), "jsonl")).splitlines()
    assert [orjson.loads(x) for x in lines][2] == {"row": 2, "label": 1, "probabilities": [0.125, 0.875]}
    assert len(lines) == 4


@pytest.mark.parametrize("fmt", outputs.OUTPUT_FORMATS)
def test_no_chunks_stream_nothing(fmt: str) -> None:
    assert b"".join(outputs.stream([], fmt)) == b""
