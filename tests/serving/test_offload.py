"""Big prediction bodies decoded in worker processes: the same arrays and the same errors as in the
server, and a process that dies is a 503 and is replaced."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import orjson
import pytest

from modelyard.errors import InvalidInput, ModelyardError, PayloadTooLarge, Unavailable, ValidationFailed
from modelyard.serving.offload import DecodePool, V2Limits, decode_job, decode_rest, decode_v2

T = TypeVar("T")
SIGNATURE = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]}
ROWS = [[5.1, 3.5, 1.4, 0.2], [1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    decoder = DecodePool(1)
    yield decoder
    decoder.close()


def _run(pool: DecodePool, fn: Callable[..., T], *args: Any) -> T:
    result: T = asyncio.run(pool.run(fn, *args))
    return result


def test_a_process_decodes_what_the_server_would(pool: DecodePool) -> None:
    body = orjson.dumps({"rows": ROWS})
    there = _run(pool, decode_rest, body, SIGNATURE, {}, None)
    here = decode_rest(body, SIGNATURE, {}, None)
    assert there.inputs is not None and here.inputs is not None
    np.testing.assert_array_equal(there.inputs["features"], here.inputs["features"])
    assert there.inputs["features"].dtype == np.float32


def test_rows_over_the_job_threshold_come_back_as_the_jobs_array(pool: DecodePool) -> None:
    body = orjson.dumps({"rows": ROWS})
    assert decode_rest(body, SIGNATURE, {}, 2).rows is None  # not over: a prediction
    job = _run(pool, decode_rest, body, SIGNATURE, {}, 1)
    assert job.inputs is None and job.rows.dtype == np.float32
    np.testing.assert_array_equal(job.rows, np.asarray(ROWS, np.float32))


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        (orjson.dumps({"rows": [[1, 2, 3, 4], [1, 2]]}), InvalidInput, "rows"),
        (orjson.dumps({"rows": [[1, 2, 3, 4], ["x", 2, 3, 4]]}), ValidationFailed, "body.rows"),
    ],
)
def test_errors_raised_in_a_process_keep_their_field(
    pool: DecodePool, body: bytes, error: type[ModelyardError], field: str
) -> None:
    over = 1 if error is ValidationFailed else None  # the job's rule for rows: first bad row named
    with pytest.raises(error) as caught:
        _run(pool, decode_rest, body, SIGNATURE, {}, over)
    assert caught.value.field == field


def test_a_v2_body_over_the_element_cap_is_refused_in_the_process(pool: DecodePool) -> None:
    tensor = {"name": "features", "datatype": "FP32", "shape": [3, 4], "data": [0.0] * 12}
    body = orjson.dumps({"inputs": [tensor]})
    with pytest.raises(PayloadTooLarge):
        _run(pool, decode_v2, body, {}, V2Limits(1 << 20, 1 << 20, 8))
    req = _run(pool, decode_v2, body, {}, V2Limits(1 << 20, 1 << 20, 12))
    assert req.arrays()["features"].shape == (3, 4)


def test_a_process_that_dies_is_a_503_and_is_replaced(pool: DecodePool) -> None:
    with pytest.raises(Unavailable):
        _run(pool, os._exit, 3)
    assert decode_rest(orjson.dumps({"rows": ROWS}), SIGNATURE, {}, None).inputs is not None
    assert _run(pool, decode_rest, orjson.dumps({"rows": ROWS}), SIGNATURE, {}, None).inputs is not None


def test_no_processes_decode_in_a_thread() -> None:
    decoder = DecodePool(0)
    got = asyncio.run(decoder.run(decode_rest, orjson.dumps({"rows": ROWS}), SIGNATURE, {}, None))
    assert got.inputs is not None and decoder._pool is None


def test_a_jobs_rows_come_back_as_one_table_and_rows_by_column_as_parsed(pool: DecodePool) -> None:
    request, rows = _run(pool, decode_job, orjson.dumps({"model": "m", "rows": ROWS}))
    assert request.model == "m" and rows.dtype == np.float64
    np.testing.assert_array_equal(rows, np.asarray(ROWS))
    keyed = [{"a": 1.0, "b": 2.0}]
    assert _run(pool, decode_job, orjson.dumps({"model": "m", "rows": keyed}))[1] == keyed
    with pytest.raises(ValidationFailed) as caught:
        _run(pool, decode_job, orjson.dumps({"model": "m", "rows": [[1.0], ["nan"]]}))
    assert caught.value.field == "body.rows" and "row 1" in caught.value.detail
