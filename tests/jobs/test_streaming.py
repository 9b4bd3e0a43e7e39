"""Inline rows read as the body streams in: the same rows and the same refusals as the whole-body parse,
wherever the body is cut, in a bounded window of memory; through the API on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.context import AppContext
from modelyard.errors import ModelyardError
from modelyard.jobs import streaming, submission
from modelyard.jobs.models import Job
from modelyard.jobs.schemas import JobCreate
from modelyard.jobs.streaming import RowStream, StreamedRows
from modelyard.serving.offload import decode_job
from tests.conftest import push_model
from tests.jobs.conftest import COLUMNS, features, jobs_in_db, stored


def streamed(body: bytes, cuts: list[int], tmp_dir: Path, *, windowed: bool = False) -> tuple[Any, Any]:
    """What the server makes of ``body`` fed to a ``RowStream`` cut at ``cuts``: (request, rows read in
    windows as a table), or, when the stream gives up (never, if ``windowed``), what the whole parse of
    its spool makes of it."""
    stream = RowStream(tmp_dir)
    try:
        for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
            stream.feed(body[start:end])
        found = stream.finish()
        assert found is not None or not windowed
        if found is None:
            return whole(stream.body.read_bytes())
        request, rows = found
        return request, np.fromfile(rows.path, dtype=np.float64).reshape(rows.count, rows.width)
    finally:
        stream.close()


def whole(body: bytes) -> tuple[Any, Any]:
    """What the whole-body parse (``offload.decode_job``) makes of ``body``, or the error it raised."""
    try:
        return decode_job(body)
    except ModelyardError as exc:
        return None, exc


def assert_same(got: tuple[Any, Any], want: tuple[Any, Any]) -> None:
    assert got[0] == want[0]
    if isinstance(want[1], ModelyardError):
        assert isinstance(got[1], type(want[1]))
        assert (str(got[1]), got[1].field, got[1].status) == (str(want[1]), want[1].field, want[1].status)
    elif isinstance(want[1], np.ndarray):
        assert isinstance(got[1], np.ndarray), got[1]
        np.testing.assert_array_equal(got[1], want[1])
    else:
        assert got[1] == want[1]


def test_rows_are_read_in_windows_into_one_table(tmp_path: Path) -> None:
    body = b'{"model": "churn", "rows": [[1, 2.5, -3e2], [4, 5, 6]], "options": {"on_error": "skip"}}'
    request, values = streamed(body, [], tmp_path, windowed=True)
    np.testing.assert_array_equal(values, [[1, 2.5, -300], [4, 5, 6]])
    assert (request.model, request.options.on_error) == ("churn", "skip")
    assert list(tmp_path.iterdir()) == []  # the spool and the values are removed on close


def test_a_body_cut_at_every_offset_gives_the_same_rows(tmp_path: Path) -> None:
    body = orjson.dumps({"version": 1, "rows": [[0.5, 1], [2, -3.25e-3], [4, 5]], "model": "churn"})
    want = whole(body)
    for cut in range(len(body) + 1):
        assert_same(streamed(body, [cut], tmp_path, windowed=True), want)
    assert_same(streamed(body, list(range(1, len(body))), tmp_path, windowed=True), want)  # byte by byte


def test_windows_cut_between_rows_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "WINDOW", 7)  # many windows, each cut wherever a row ends
    body = orjson.dumps({"model": "churn", "rows": features(50).tolist()})
    assert_same(streamed(body, list(range(3, len(body), 5)), tmp_path, windowed=True), whole(body))


numbers = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False, width=64))
spaces = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Job bodies with rows of equal length, the other fields in any order, JSON laid out any way."""
    width = draw(st.integers(1, 6))
    rows = draw(st.lists(st.lists(numbers, min_size=width, max_size=width), min_size=1, max_size=40))
    ws = draw(spaces)
    text_rows = ["[" + ws + ("," + ws).join(orjson.dumps(v).decode() for v in row) + ws + "]" for row in rows]
    fields = {
        "model": '"churn"',
        "rows": "[" + ws + ("," + draw(spaces)).join(text_rows) + ws + "]",
        "options": draw(st.sampled_from(['{"on_error": "skip"}', '{"chunk_rows": 7}', "{}"])),
        "version": draw(st.sampled_from(['"latest"', "2"])),
    }
    keys = draw(st.permutations(list(fields)))
    sep = draw(spaces)
    return ("{" + sep + ("," + sep).join(f'"{k}"{ws}:{ws}{fields[k]}' for k in keys) + sep + "}").encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies(), data=st.data())
def test_streamed_rows_equal_the_whole_body_parse(body: bytes, data: st.DataObject, tmp_path: Path) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=8)))
    assert_same(streamed(body, cuts, tmp_path, windowed=True), whole(body))


BAD_BODIES = [
    b'{"model": "churn", "rows": [[1, 2], [3, 4],]}',  # trailing comma
    b'{"model": "churn", "rows": [[1, 2] [3, 4]]}',  # no comma between rows
    b'{"model": "churn", "rows": [[1, 2],, [3, 4]]}',
    b'{"model": "churn", "rows": [, [1, 2]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, 4]}',  # the array never closed
    b'{"model": "churn", "rows": [[1, 2], [3, 4]]',  # nor the object
    b'{"model": "churn", "rows": [[1, 2], [3, 4]]} x',
    b'{"model": "churn", "rows": [[1, NaN], [3, 4]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, Infinity]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, -Infinity]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, 1e400]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, 01]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, 1.]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, "4"]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, "nan"]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, null]]}',
    b'{"model": "churn", "rows": [[1, 2], [3, true]]}',
    b'{"model": "churn", "rows": [[1, 2], [3]]}',  # ragged
    b'{"model": "churn", "rows": [[1, 2], [[3], 4]]}',  # nested
    b'{"model": "churn", "rows": [[1, 2], 3]}',
    b'{"model": "churn", "rows": [1, 2]}',
    b'{"model": "churn", "rows": []}',
    b'{"model": "churn", "rows": [[]]}',
    b'{"model": "churn", "rows": [[], []]}',
    b'{"model": "churn", "rows": 5}',
    b'{"model": "churn", "rows": null}',
    b'{"model": "churn", "rows": {"a": [1]}}',
    b'{"model": "churn", "rows": [{"f0": 1}, {"f0": 2}]}',
    b'{"model": "churn", "rows": [[1, 2]], "rows": [[3, 4, 5]]}',  # the last one counts
    b'{"model": "churn", "r\\u006fws": [[1, 2]]}',
    b'{"model": "churn", "rows": [[1, 2]], "uri": "in.csv"}',
    b'{"model": "no such name!", "rows": [[1, 2]]}',
    b'{"model": "churn", "rows": [[1, 2]], "options": {"on_error": "maybe"}}',
    b'{"model": "churn", "rows": [[1, 2]], "options": {"rows": [[1]]}}',
    b'{"rows": [[1, 2]]}',
    b"[[1, 2]]",
    b'"rows"',
    b"",
    b'{"model": "churn", "rows": [[1, 2]]}\x00',
    b'\xef\xbb\xbf{"model": "churn", "rows": [[1, 2]]}',
    b'{"model": "ch\\"urn", "rows": [[1, 2]]}',
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_every_odd_body_gets_the_whole_body_answer(body: bytes, tmp_path: Path) -> None:
    want = whole(body)
    for cuts in ([], [len(body) // 2], list(range(1, len(body)))):
        assert_same(streamed(body, cuts, tmp_path), want)
    assert list(tmp_path.iterdir()) == []


def test_peak_memory_is_a_fraction_of_the_whole_body_parse(tmp_path: Path) -> None:
    """A body near the 8 MiB limit: parsed whole, its rows take over 10x its size; streamed, under half."""
    rows = np.random.default_rng(0).normal(size=(40_000, 20)).round(6)
    body = orjson.dumps({"model": "churn", "rows": rows.tolist()})
    assert 7 * 2**20 < len(body) < 8 * 2**20
    tracemalloc.start()
    try:
        stream = RowStream(tmp_path)
        for start in range(0, len(body), 65_536):  # as the server receives it
            stream.feed(body[start : start + 65_536])
        found = stream.finish()
        assert found is not None
        streaming.write_npy(found[1], np.dtype(np.float32), tmp_path / "input.npy")
        stream.close()
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        decode_job(body)[1].astype(np.float32)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed_peak < len(body) / 2, (streamed_peak, len(body))
    assert whole_peak > 3 * len(body)  # what streaming saves: the list of floats
    np.testing.assert_array_equal(np.load(tmp_path / "input.npy"), rows.astype(np.float32))


# ---------------------------------------------------------------- submission and the API


def _streamed_rows(body: bytes, tmp_dir: Path) -> tuple[JobCreate, StreamedRows]:
    stream = RowStream(tmp_dir)  # left open: its values are what the submission reads
    stream.feed(body)
    found = stream.finish()
    assert found is not None
    return found


def test_streamed_rows_are_stored_as_the_whole_parse_stores_them(ctx: AppContext, tmp_path: Path) -> None:
    x = features(300)
    body = orjson.dumps({"model": "churn", "rows": x.tolist()})
    request, rows = _streamed_rows(body, tmp_path)
    small = submission.submit(ctx, request, rows=rows)  # in the job's row
    ctx.settings.job_inline_input_bytes = 0  # in a file
    request, rows = _streamed_rows(body, tmp_path)
    job = submission.submit(ctx, request, rows=rows)
    path = ctx.storage.local_path(job.input_key)
    assert path is not None
    want = io.BytesIO()
    np.save(want, x)
    assert small.input_inline == want.getvalue() == path.read_bytes()  # byte for byte the same .npy
    assert (job.total_rows, job.input_inline, job.input_size) == (300, None, len(want.getvalue()))
    assert small.total_rows == 300


@pytest.fixture
def api(client: TestClient, model_dir: Path) -> Iterator[TestClient]:
    push_model(client, model_dir / "logreg.onnx", "churn", {"columns": COLUMNS})
    yield client


def _ctx(c: TestClient) -> AppContext:
    found: AppContext = c.app.state.ctx  # type: ignore[attr-defined]
    return found


def test_a_body_past_the_old_cap_is_one_job_read_in_windows(api: TestClient) -> None:
    x = features(60_000).astype(np.float64).round(3)  # ~7.5 MB of JSON, under the 8 MiB body limit
    body = orjson.dumps({"model": "churn", "rows": x.tolist()})
    assert len(body) < 8 * 2**20
    resp = api.post("/api/v1/jobs", content=body)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["progress"]["total_rows"] == 60_000
    ctx = _ctx(api)
    with ctx.uow() as session:
        stored_job = session.get(Job, job["id"])
        assert stored_job is not None
        path = ctx.storage.local_path(stored_job.input_key)
    assert path is not None
    np.testing.assert_array_equal(np.load(path), x.astype(np.float32))
    assert list((ctx.settings.data_dir / "tmp").iterdir()) == []


def _big(rows: list[Any], **fields: Any) -> bytes:
    body = orjson.dumps({"model": "churn", "rows": rows, **fields})
    assert len(body) > 128 * 1024  # past the size read whole
    return body


GOOD = features(5_000).tolist()


@pytest.mark.parametrize(
    ("body", "status", "field", "detail"),
    [
        (_big(GOOD)[:-2] + b",]}", 400, None, "trailing comma"),
        (_big(GOOD).replace(b"],[", b"],[NaN,", 1), 400, None, "not valid JSON"),
        (_big([*GOOD[:3000], [1.0, "x"], *GOOD[3000:]]), 422, "body.rows", "row 3000 holds 'x'"),
        (_big([*GOOD[:4000], [1.0] * 19, *GOOD[4000:]]), 400, "rows", "not a regular numeric table"),
        (_big([r[:19] for r in GOOD]), 400, "rows", "rows have 19 values, the model expects 20"),
        (_big(GOOD, model="nobody"), 404, "name", "nobody"),
        (_big(GOOD, options={"on_error": "maybe"}), 422, "body.options.on_error", None),
        (_big(GOOD, uri="in.csv"), 422, "body", "exactly one of"),
    ],
)
def test_a_bad_big_body_is_the_same_4xx_and_leaves_nothing(
    api: TestClient, body: bytes, status: int, field: str | None, detail: str | None
) -> None:
    resp = api.post("/api/v1/jobs", content=body)
    assert resp.status_code == status, resp.text
    problem = resp.json()
    assert problem.get("field") == field
    if detail:
        assert detail in problem["detail"]
    ctx = _ctx(api)
    want = whole(body)[1]
    if isinstance(want, ModelyardError):  # refused by the parse itself: the same answer, word for word
        assert (problem["detail"], problem["status"]) == (str(want), want.status)
    assert jobs_in_db(ctx) == 0 and stored(ctx) == []
    assert list((ctx.settings.data_dir / "tmp").iterdir()) == []


def test_the_row_cap_when_set_is_413_on_a_streamed_body(api: TestClient) -> None:
    ctx = _ctx(api)
    ctx.settings.max_inline_rows = 4_999
    resp = api.post("/api/v1/jobs", content=_big(GOOD))
    assert resp.status_code == 413, resp.text
    assert resp.json()["detail"] == "5000 inline rows is over the limit of 4999; upload a file"
    assert jobs_in_db(ctx) == 0 and stored(ctx) == []
