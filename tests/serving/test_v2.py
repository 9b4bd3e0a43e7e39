"""The Open Inference Protocol V2 codec: every datatype in JSON and binary, round trips, the stock
tritonclient on both sides of the wire, and every way a request can be malformed."""

from __future__ import annotations

import ast
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelyard.errors import InvalidInput, InvalidModelFile, ModelyardError, PayloadTooLarge
from modelyard.serving import v2
from modelyard.serving.v2 import (
    InferRequest,
    RequestOutput,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    model_metadata,
    numpy_to_v2,
    onnx_type_to_v2,
)

MAX = 1_000_000

# One sample array per datatype, with awkward values (extremes, negative zero, NaN, empty strings).
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255]], dtype=np.uint8),
    "UINT16": np.array([0, 65535, 7], dtype=np.uint16),
    "UINT32": np.array([0, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1, 2**63], dtype=np.uint64),
    "INT8": np.array([[-128, 127], [0, -1]], dtype=np.int8),
    "INT16": np.array([-32768, 32767], dtype=np.int16),
    "INT32": np.array([-(2**31), 2**31 - 1, 5], dtype=np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1], [1, -1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 65504.0], [0.000061035156, -0.0, 3.140625]], dtype=np.float16),
    "FP32": np.array([[1.5, -2.25, 3.4028235e38, 1e-45]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e308], [5e-324, np.nan]], dtype=np.float64),
    "BF16": np.array([1.0, -2.5, 3.0e38, 0.0078125], dtype=ml_dtypes.bfloat16),
    "BYTES": np.array([[b"hello", b""], ["h\u00e9llo \u2603".encode(), b"a b"]], dtype=np.object_),
}


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and values (NaN equal to NaN)."""
    assert got.dtype == (np.dtype(np.object_) if want.dtype.kind in "OSU" else want.dtype)
    assert got.shape == want.shape
    if want.dtype == ml_dtypes.bfloat16:
        np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))
    elif want.dtype.kind in "OSU":
        assert got.tolist() == want.tolist()
    else:
        np.testing.assert_array_equal(got, want)


def request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    """A plain-JSON request body."""
    return orjson.dumps({"inputs": list(inputs), **extra})


def fp32(name: str = "x", shape: list[int] | None = None, data: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": "FP32",
        "shape": shape or [2],
        "data": [1.0, 2.0] if data is None else data,
    }


def binary_request(header: dict[str, Any], tail: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + tail, len(head)


def rejects(body: bytes, header_length: int | None = None, max_elements: int = MAX) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        decode_request(body, header_length, max_elements=max_elements)
    return info.value


# ----------------------------------------------------------------------------------------- datatypes


def test_datatype_maps_are_mirror_images() -> None:
    for name, dt in v2.V2_TO_NUMPY.items():
        assert v2.v2_to_numpy(name) == dt
        assert numpy_to_v2(dt) == name
    assert numpy_to_v2(np.dtype("<U3")) == "BYTES"
    assert numpy_to_v2(np.dtype("S3")) == "BYTES"
    assert numpy_to_v2(np.dtype(">f4")) == "FP32"
    with pytest.raises(ValueError, match="complex"):
        numpy_to_v2(np.complex64)


@pytest.mark.parametrize(
    ("onnx_type", "datatype"),
    [
        ("tensor(bool)", "BOOL"),
        ("tensor(uint8)", "UINT8"),
        ("tensor(uint16)", "UINT16"),
        ("tensor(uint32)", "UINT32"),
        ("tensor(uint64)", "UINT64"),
        ("tensor(int8)", "INT8"),
        ("tensor(int16)", "INT16"),
        ("tensor(int32)", "INT32"),
        ("tensor(int64)", "INT64"),
        ("tensor(float16)", "FP16"),
        ("tensor(float)", "FP32"),
        ("tensor(double)", "FP64"),
        ("tensor(bfloat16)", "BF16"),
        ("tensor(string)", "BYTES"),
    ],
)
def test_onnx_type_to_v2(onnx_type: str, datatype: str) -> None:
    assert onnx_type_to_v2(onnx_type) == datatype


@pytest.mark.parametrize("onnx_type", ["seq(tensor(float))", "map(int64,tensor(float))", "tensor(complex64)"])
def test_onnx_type_to_v2_rejects_what_v2_cannot_carry(onnx_type: str) -> None:
    with pytest.raises(InvalidModelFile, match="no Open Inference Protocol datatype"):
        onnx_type_to_v2(onnx_type)


# ----------------------------------------------------------------------- every datatype, both encodings


@pytest.mark.parametrize("datatype", list(SAMPLES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_round_trip_for_every_datatype(datatype: str, binary: bool) -> None:
    arr = SAMPLES[datatype]
    body, header_length = encode_request({"t": arr}, binary_inputs=binary)
    assert (header_length is not None) is binary
    req = decode_request(body, header_length, max_elements=MAX)
    (got,) = req.inputs
    assert (got.name, got.datatype, got.shape) == ("t", datatype, arr.shape)
    assert_same(got.data, arr)
    assert ("binary_data_size" in got.parameters) is binary


@pytest.mark.parametrize("datatype", list(SAMPLES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_response_round_trip_for_every_datatype(datatype: str, binary: bool) -> None:
    arr = SAMPLES[datatype]
    body, header_length = encode_response(
        model_name="m",
        model_version=3,
        request_id="r1",
        outputs={"t": arr},
        requested=None,
        binary_default=binary,
    )
    assert (header_length is not None) is binary
    resp = decode_response(body, header_length)
    assert (resp.model_name, resp.model_version, resp.id, resp.datatypes) == ("m", "3", "r1", {"t": datatype})
    assert_same(resp.outputs["t"], arr)


# Hand-written wire bytes, independent of our encoder: (datatype, shape, JSON data, binary tail, expected).
WIRE_CASES = [
    ("BOOL", [3], [True, False, True], b"\x01\x00\x01", np.array([True, False, True])),
    ("UINT8", [2], [0, 255], b"\x00\xff", np.array([0, 255], np.uint8)),
    ("UINT16", [1], [258], b"\x02\x01", np.array([258], np.uint16)),
    ("UINT32", [1], [4294967295], b"\xff\xff\xff\xff", np.array([2**32 - 1], np.uint32)),
    ("UINT64", [1], [2**64 - 1], b"\xff" * 8, np.array([2**64 - 1], np.uint64)),
    ("INT8", [2], [-1, 127], b"\xff\x7f", np.array([-1, 127], np.int8)),
    ("INT16", [1], [-2], b"\xfe\xff", np.array([-2], np.int16)),
    ("INT32", [1], [-2], struct.pack("<i", -2), np.array([-2], np.int32)),
    ("INT64", [2, 1], [[-2], [7]], struct.pack("<2q", -2, 7), np.array([[-2], [7]], np.int64)),
    ("FP16", [2], [1.0, -2.0], struct.pack("<2e", 1.0, -2.0), np.array([1.0, -2.0], np.float16)),
    (
        "FP32",
        [2, 2],
        [[1.5, 2], [3, 4]],
        struct.pack("<4f", 1.5, 2, 3, 4),
        np.array([[1.5, 2], [3, 4]], np.float32),
    ),
    ("FP64", [1], [0.1], struct.pack("<d", 0.1), np.array([0.1])),
    ("BF16", [2], [1.0, -2.0], b"\x80\x3f\x00\xc0", np.array([1.0, -2.0], ml_dtypes.bfloat16)),
    (
        "BYTES",
        [2],
        ["ab", "\u00e9"],
        b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9",
        np.array([b"ab", "\u00e9".encode()], dtype=np.object_),
    ),
]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "tail", "want"), WIRE_CASES, ids=[c[0] for c in WIRE_CASES]
)
def test_decode_request_json_data_by_hand(
    datatype: str, shape: list[int], data: Any, tail: bytes, want: np.ndarray
) -> None:
    req = decode_request(
        request({"name": "t", "datatype": datatype, "shape": shape, "data": data}), None, max_elements=MAX
    )
    assert_same(req.inputs[0].data, want)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "tail", "want"), WIRE_CASES, ids=[c[0] for c in WIRE_CASES]
)
def test_decode_request_binary_data_by_hand(
    datatype: str, shape: list[int], data: Any, tail: bytes, want: np.ndarray
) -> None:
    header = {
        "inputs": [
            {"name": "t", "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(tail)}}
        ]
    }
    body, header_length = binary_request(header, tail)
    assert_same(decode_request(body, header_length, max_elements=MAX).inputs[0].data, want)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "tail", "want"), WIRE_CASES, ids=[c[0] for c in WIRE_CASES]
)
def test_encode_response_binary_bytes_are_the_wire_format(
    datatype: str, shape: list[int], data: Any, tail: bytes, want: np.ndarray
) -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs={"t": want},
        requested=None,
        binary_default=True,
    )
    assert header_length is not None
    assert body[header_length:] == tail
    head = orjson.loads(body[:header_length])
    assert head == {
        "model_name": "m",
        "outputs": [
            {"name": "t", "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(tail)}}
        ],
    }


def test_binary_bool_reads_any_nonzero_byte_as_true() -> None:
    header = {
        "inputs": [{"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]
    }
    body, n = binary_request(header, b"\x00\x02\xff")
    assert decode_request(body, n, max_elements=MAX).inputs[0].data.tolist() == [False, True, True]


def test_several_binary_inputs_take_their_slices_in_order_and_mix_with_json() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"x", b"yz"], dtype=np.object_)
    c = np.array([7, 8], dtype=np.int64)
    body, n = encode_request({"a": a, "json": c, "b": b}, binary_inputs={"a", "b"})
    req = decode_request(body, n, max_elements=MAX)
    assert [i.name for i in req.inputs] == ["a", "json", "b"]
    feeds = req.arrays()
    assert_same(feeds["a"], a)
    assert_same(feeds["json"], c)
    assert_same(feeds["b"], b)
    assert "data" in orjson.loads(body[:n])["inputs"][1]


def test_misaligned_binary_data_is_copied_to_an_aligned_array() -> None:
    arr = np.arange(5, dtype=np.float64)
    for pad in range(8):  # vary the header length so the tail starts at every alignment
        body, n = encode_request({"x": arr}, request_id="r" * pad)
        got = decode_request(body, n, max_elements=MAX).inputs[0].data
        assert got.flags.aligned
        assert_same(got, arr)


def test_nested_json_data_and_scalars() -> None:
    req = decode_request(
        request(
            {"name": "n", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
            {"name": "s", "datatype": "FP64", "shape": [], "data": [2.5]},
            {"name": "e", "datatype": "INT64", "shape": [0, 3], "data": []},
            {"name": "w", "datatype": "BYTES", "shape": [2, 1], "data": [["a"], ["b"]]},
        ),
        None,
        max_elements=MAX,
    )
    got = req.arrays()
    assert_same(got["n"], np.array([[1, 2], [3, 4]], np.int32))
    assert_same(got["s"], np.array(2.5))
    assert_same(got["e"], np.empty((0, 3), np.int64))
    assert_same(got["w"], np.array([[b"a"], [b"b"]], dtype=np.object_))


def test_json_null_reads_as_nan_for_float_datatypes() -> None:
    req = decode_request(request(fp32(data=[None, 1.0])), None, max_elements=MAX)
    got = req.inputs[0].data
    assert math.isnan(got[0]) and got[1] == 1.0


def test_json_floats_out_of_fp16_range_become_infinity() -> None:
    req = decode_request(
        request({"name": "h", "datatype": "FP16", "shape": [2], "data": [1e6, -70000]}),
        None,
        max_elements=MAX,
    )
    assert req.inputs[0].data.tolist() == [math.inf, -math.inf]


def test_request_id_parameters_and_requested_outputs() -> None:
    body = request(
        fp32(),
        id="req-1",
        parameters={"binary_data_output": True, "custom": 3},
        outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    )
    req = decode_request(body, None, max_elements=MAX)
    assert req.id == "req-1"
    assert req.parameters == {"binary_data_output": True, "custom": 3}
    assert req.binary_output_default is True
    assert req.outputs == [
        RequestOutput("a", True, {}),
        RequestOutput("b", False, {"binary_data": False}),
    ]


def test_outputs_default_to_all_in_json() -> None:
    req = decode_request(request(fp32()), None, max_elements=MAX)
    assert isinstance(req, InferRequest)
    assert (req.id, req.outputs, req.parameters, req.binary_output_default) == (None, None, {}, False)
    assert decode_request(request(fp32(), outputs=[]), None, max_elements=MAX).outputs is None


# --------------------------------------------------------------------------------- response encoding


def test_encode_response_json_layout() -> None:
    outputs = {
        "probs": np.array([[0.25, 0.75]], dtype=np.float32),
        "label": np.array([3], dtype=np.int64),
        "ok": np.array([True, False]),
        "half": np.array([0.5], dtype=np.float16),
        "text": np.array(["caf\u00e9", "x"], dtype=np.object_),  # onnxruntime returns str, not bytes
    }
    body, header_length = encode_response(
        model_name="iris",
        model_version="2",
        request_id="abc",
        outputs=outputs,
        requested=None,
        binary_default=False,
    )
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "iris",
        "model_version": "2",
        "id": "abc",
        "outputs": [
            {"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "ok", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "half", "datatype": "FP16", "shape": [1], "data": [0.5]},
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["caf\u00e9", "x"]},
        ],
    }


def test_encode_response_json_edge_values() -> None:
    outputs = {
        "f": np.array([np.nan, np.inf, 1.0], dtype=np.float32),
        "b": np.array([b"\xff\xfeok"], dtype=np.object_),
        "t": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "u": np.array(["ab", "c"]),
        "be": np.array([1.5, 2.5], dtype=">f8"),
    }
    body, header_length = encode_response(
        model_name="m",
        model_version=1,
        request_id=None,
        outputs=outputs,
        requested=None,
        binary_default=False,
    )
    assert header_length is None
    data = {o["name"]: o["data"] for o in orjson.loads(body)["outputs"]}
    assert data["f"] == [None, None, 1.0]
    assert data["b"] == ["\ufffd\ufffdok"]
    assert data["t"] == [0, 1, 2, 3, 4, 5]  # row-major whatever the memory layout
    assert data["u"] == ["ab", "c"]
    assert data["be"] == [1.5, 2.5]


def test_encode_response_returns_requested_outputs_only_in_their_order_and_encoding() -> None:
    outputs = {"a": np.array([1.0], np.float32), "b": np.array([2], np.int64), "c": np.array([True])}
    requested = [RequestOutput("c", binary=True), RequestOutput("a", binary=False)]
    body, header_length = encode_response(
        model_name="m",
        model_version=1,
        request_id=None,
        outputs=outputs,
        requested=requested,
        binary_default=False,
    )
    assert header_length is not None
    head = orjson.loads(body[:header_length])
    assert [o["name"] for o in head["outputs"]] == ["c", "a"]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 1}
    assert head["outputs"][1]["data"] == [1.0]
    assert body[header_length:] == b"\x01"
    resp = decode_response(body, header_length)
    assert list(resp.outputs) == ["c", "a"]


def test_encode_response_rejects_unknown_requested_output() -> None:
    with pytest.raises(InvalidInput) as info:
        encode_response(
            model_name="m",
            model_version=1,
            request_id=None,
            outputs={"y": np.zeros(1, np.float32)},
            requested=[RequestOutput("y"), RequestOutput("nope")],
            binary_default=False,
        )
    assert info.value.field == "outputs[1].name"
    assert "'nope'" in info.value.detail and "'y'" in info.value.detail


def test_encode_response_rejects_outputs_v2_cannot_carry() -> None:
    for bad in ({"z": np.zeros(1, np.complex64)}, {"z": [{"a": 1.0}]}):
        with pytest.raises(ModelyardError) as info:
            encode_response(
                model_name="m",
                model_version=1,
                request_id=None,
                outputs=bad,
                requested=None,
                binary_default=False,
            )
        assert info.value.status == 500 and "'z'" in info.value.detail


def test_encode_request_json_refuses_non_utf8_bytes() -> None:
    with pytest.raises(InvalidInput) as info:
        encode_request({"s": np.array([b"\xff"], dtype=np.object_)}, binary_inputs=False)
    assert info.value.field == "inputs[0].data"


def test_encode_request_datatype_override_and_outputs() -> None:
    body, n = encode_request(
        {"x": [[1, 2]]},
        datatypes={"x": "FP16"},
        outputs=["y", RequestOutput("z", binary=True)],
        binary_output_default=False,
        request_id="q",
        parameters={"k": "v"},
    )
    req = decode_request(body, n, max_elements=MAX)
    assert_same(req.inputs[0].data, np.array([[1, 2]], np.float16))
    assert req.outputs == [RequestOutput("y", False, {}), RequestOutput("z", True, {"binary_data": True})]
    assert (req.id, req.parameters) == ("q", {"k": "v", "binary_data_output": False})


# ------------------------------------------------------------------------------------ property tests

_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
_NUMERIC = [d for d in v2.V2_TO_NUMPY if d not in ("BYTES", "BF16")]


@st.composite
def tensors(draw: st.DrawFn, json_safe: bool) -> np.ndarray:
    """An array of any V2 datatype; ``json_safe`` keeps to values JSON carries exactly."""
    datatype = draw(st.sampled_from([*_NUMERIC, "BF16", "BYTES"]))
    shape = draw(_SHAPES)
    if datatype == "BYTES":
        elements = st.text(max_size=8).map(str.encode) if json_safe else st.binary(max_size=8)
        return draw(hnp.arrays(np.object_, shape, elements=elements))
    if datatype == "BF16":
        floats = st.floats(-(2.0**127), 2.0**127, width=32)  # bf16 tops out near 3.39e38
        return draw(hnp.arrays(np.float32, shape, elements=floats)).astype(ml_dtypes.bfloat16)
    dt = v2.V2_TO_NUMPY[datatype]
    if dt.kind == "f":
        return draw(
            hnp.arrays(dt, shape, elements=st.floats(width=dt.itemsize * 8, allow_infinity=not json_safe))
        )
    return draw(hnp.arrays(dt, shape))


@st.composite
def tensor_dicts(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], set[str]]:
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    binary = {n for n in names if draw(st.booleans())}
    return {n: draw(tensors(json_safe=n not in binary)) for n in names}, binary


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_dicts(), st.none() | st.text(max_size=5))
def test_property_encode_request_then_decode_request(
    case: tuple[dict[str, np.ndarray], set[str]], request_id: str | None
) -> None:
    arrays, binary = case
    body, n = encode_request(arrays, binary_inputs=binary, request_id=request_id)
    req = decode_request(body, n, max_elements=MAX)
    assert req.id == request_id
    assert [i.name for i in req.inputs] == list(arrays)
    for got in req.inputs:
        assert got.datatype == numpy_to_v2(arrays[got.name].dtype)
        assert_same(got.data, arrays[got.name])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor_dicts(), st.booleans())
def test_property_encode_response_then_decode_response(
    case: tuple[dict[str, np.ndarray], set[str]], ask_by_name: bool
) -> None:
    arrays, binary = case
    requested = [RequestOutput(n, n in binary) for n in reversed(arrays)] if ask_by_name else None
    if not ask_by_name:
        arrays = {n: a for n, a in arrays.items() if n in binary} if binary else arrays
    body, n = encode_response(
        model_name="m",
        model_version=7,
        request_id=None,
        outputs=arrays,
        requested=requested,
        binary_default=bool(binary),
    )
    resp = decode_response(body, n)
    assert list(resp.outputs) == (list(reversed(arrays)) if ask_by_name else list(arrays))
    for name, got in resp.outputs.items():
        assert_same(got, arrays[name])


# ------------------------------------------------------------------------ the stock tritonclient


TRITON_ARRAYS: dict[str, np.ndarray] = {
    "FP32": np.array([[1.5, -2.0, 3.25]], dtype=np.float32),
    "FP16": np.array([0.5, -1.0, 65504.0], dtype=np.float16),
    "BOOL": np.array([[True], [False]]),
    "INT64": np.array([-(2**62), 0, 2**62], dtype=np.int64),
    "BYTES": np.array([b"hello", b"", "w\u00f6rld".encode()], dtype=np.object_),
}


@pytest.mark.parametrize("datatype", list(TRITON_ARRAYS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_decode_request_built_by_tritonclient(datatype: str, binary: bool) -> None:
    arr = TRITON_ARRAYS[datatype]
    tensor = triton.InferInput("in", list(arr.shape), datatype)
    tensor.set_data_from_numpy(arr, binary_data=binary)
    other = triton.InferInput("other", [2], "INT32")
    other.set_data_from_numpy(np.array([1, 2], dtype=np.int32), binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor, other],
        outputs=[triton.InferRequestedOutput("out", binary_data=binary)],
        request_id="tc-1",
    )
    req = decode_request(body, json_size, max_elements=MAX)
    assert req.id == "tc-1"
    assert_same(req.arrays()["in"], arr)
    assert_same(req.arrays()["other"], np.array([1, 2], dtype=np.int32))
    assert req.outputs == [RequestOutput("out", binary, {"binary_data": binary})]


def test_tritonclient_without_outputs_asks_for_binary_everything() -> None:
    tensor = triton.InferInput("in", [2], "FP32")
    tensor.set_data_from_numpy(np.array([1, 2], dtype=np.float32), binary_data=False)
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    assert json_size is None  # all JSON: no Inference-Header-Content-Length
    req = decode_request(body, json_size, max_elements=MAX)
    assert (req.outputs, req.binary_output_default) == (None, True)


@pytest.mark.parametrize("datatype", list(TRITON_ARRAYS))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_reads_encode_response(datatype: str, binary: bool) -> None:
    arr = TRITON_ARRAYS[datatype]
    outputs = {"out": arr, "extra": np.array([[1, 2]], dtype=np.int32)}
    body, header_length = encode_response(
        model_name="m",
        model_version=1,
        request_id="tc-2",
        outputs=outputs,
        requested=None,
        binary_default=binary,
    )
    result = triton.InferResult.from_response_body(body, header_length=header_length)
    assert result.get_response()["id"] == "tc-2"
    got = result.as_numpy("out")
    if datatype == "BYTES" and not binary:  # JSON strings come back as str
        assert got.tolist() == [b.decode() for b in arr.tolist()]
    else:
        assert_same(got, arr)
    np.testing.assert_array_equal(result.as_numpy("extra"), outputs["extra"])


# ----------------------------------------------------------------------------------- bad requests


def test_decode_rejects_unknown_datatype() -> None:
    err = rejects(request({"name": "x", "datatype": "FP8", "shape": [1], "data": [1]}))
    assert err.field == "inputs[0].datatype"
    assert "'x'" in err.detail and "'FP8'" in err.detail


def test_decode_rejects_shape_that_does_not_match_data() -> None:
    err = rejects(request(fp32(shape=[2, 3], data=[1, 2, 3, 4, 5])))
    assert err.field == "inputs[0].data"
    assert "'x'" in err.detail and "5 elements" in err.detail and "6" in err.detail


def test_decode_rejects_bytes_shape_that_does_not_match_data() -> None:
    err = rejects(request({"name": "s", "datatype": "BYTES", "shape": [3], "data": ["a", "b"]}))
    assert err.field == "inputs[0].data"


def test_decode_rejects_binary_size_that_does_not_match_shape() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 8}}]
    }
    err = rejects(*binary_request(header, b"\x00" * 8))
    assert err.field == "inputs[0].parameters.binary_data_size"
    assert "'x'" in err.detail and "12" in err.detail


def test_decode_rejects_truncated_binary_tail() -> None:
    header = {
        "inputs": [
            {"name": "a", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
        ]
    }
    err = rejects(*binary_request(header, b"\x00" * 20))
    assert err.field == "inputs[1].parameters.binary_data_size"
    assert "'b'" in err.detail and "truncated" in err.detail


def test_decode_rejects_binary_data_size_without_header_length() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": 1}}]
    }
    err = rejects(orjson.dumps(header), None)
    assert err.field == "inputs[0].parameters.binary_data_size"
    assert "'x'" in err.detail and "Inference-Header-Content-Length" in err.detail


def test_decode_rejects_binary_tail_without_header_length() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": 1}}]
    }
    body, _ = binary_request(header, b"\x01")
    err = rejects(body, None)
    assert err.field == "body"
    assert "Inference-Header-Content-Length" in err.detail


def test_decode_rejects_unclaimed_trailing_bytes() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "parameters": {"binary_data_size": 1}}]
    }
    err = rejects(*binary_request(header, b"\x01\x02"))
    assert err.field == "body"


@pytest.mark.parametrize(
    "tail",
    [b"\x05\x00\x00\x00ab", b"\x01\x00", b"\x01\x00\x00\x00a\x01\x00\x00\x00b\x00\x00\x00\x00"],
    ids=["element-overruns", "cut-length-prefix", "too-many-elements"],
)
def test_decode_rejects_malformed_binary_bytes(tail: bytes) -> None:
    header = {
        "inputs": [
            {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(tail)}}
        ]
    }
    err = rejects(*binary_request(header, tail))
    assert err.field == "inputs[0].parameters.binary_data_size"
    assert "'s'" in err.detail


@pytest.mark.parametrize("header_length", [-1, 10_000])
def test_decode_rejects_header_length_outside_the_body(header_length: int) -> None:
    err = rejects(request(fp32()), header_length)
    assert err.field == "Inference-Header-Content-Length"


@pytest.mark.parametrize(
    ("body", "header_length"),
    [(b"not json", None), (b"", None), (b'{"inputs": [', None), (b'{"inputs": []}garbage', 3)],
)
def test_decode_rejects_non_json_header(body: bytes, header_length: int | None) -> None:
    err = rejects(body, header_length)
    assert err.field == "body"
    assert "not valid JSON" in err.detail


def test_decode_rejects_header_that_is_not_an_object() -> None:
    assert rejects(b"[1, 2]").field == "body"


def test_decode_rejects_missing_inputs_key() -> None:
    err = rejects(orjson.dumps({"id": "x"}))
    assert err.field == "inputs"
    assert "inputs" in err.detail


def test_decode_rejects_too_many_elements() -> None:
    body = request(fp32("a", [3, 3], [0.0] * 9), fp32("b", [2], [0.0, 0.0]))
    assert len(decode_request(body, None, max_elements=11).inputs) == 2
    with pytest.raises(PayloadTooLarge) as info:
        decode_request(body, None, max_elements=10)
    assert info.value.field == "inputs[1].shape"
    assert "'b'" in info.value.detail and "10" in info.value.detail


def test_decode_checks_the_element_cap_before_decoding_data() -> None:
    body = request(
        {"name": "big", "datatype": "FP32", "shape": [10**12], "parameters": {"binary_data_size": 4}}
    )
    with pytest.raises(PayloadTooLarge):
        decode_request(body, None, max_elements=MAX)


@pytest.mark.parametrize(
    ("tensor", "field", "words"),
    [
        ({"datatype": "FP32", "shape": [1], "data": [1]}, "inputs[0].name", "name"),
        ({"name": "x", "datatype": "FP32", "shape": [-1], "data": []}, "inputs[0].shape", "non-negative"),
        ({"name": "x", "datatype": "FP32", "shape": [1.0], "data": [1]}, "inputs[0].shape", "integers"),
        ({"name": "x", "datatype": "FP32", "shape": [True], "data": [1]}, "inputs[0].shape", "integers"),
        ({"name": "x", "datatype": "FP32", "shape": "2", "data": [1, 2]}, "inputs[0].shape", "array"),
        (
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]},
            "inputs[0].data",
            "rectangular",
        ),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": ["1", "2"]}, "inputs[0].data", "numbers"),
        ({"name": "x", "datatype": "FP32", "shape": [2], "data": [True, False]}, "inputs[0].data", "numbers"),
        ({"name": "x", "datatype": "INT64", "shape": [2], "data": [1.5, 2]}, "inputs[0].data", "integers"),
        ({"name": "x", "datatype": "INT8", "shape": [2], "data": [1, 300]}, "inputs[0].data", "[-128, 127]"),
        (
            {"name": "x", "datatype": "UINT64", "shape": [2], "data": [-1, 2**63]},
            "inputs[0].data",
            "integers",
        ),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [None]}, "inputs[0].data", "integers"),
        ({"name": "x", "datatype": "BOOL", "shape": [2], "data": [1, 0]}, "inputs[0].data", "true/false"),
        ({"name": "x", "datatype": "BYTES", "shape": [2], "data": ["a", 1]}, "inputs[0].data", "strings"),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, "inputs[0].data", "neither"),
        (
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1],
                "data": [1],
                "parameters": {"binary_data_size": 4},
            },
            "inputs[0].data",
            "both",
        ),
        (
            {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": "4"}},
            "inputs[0].parameters.binary_data_size",
            "non-negative integer",
        ),
        (
            {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"shared_memory_region": "r"}},
            "inputs[0].parameters.shared_memory_region",
            "shared-memory",
        ),
        (
            {"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": []},
            "inputs[0].parameters",
            "",
        ),
    ],
)
def test_decode_rejects_malformed_input(tensor: dict[str, Any], field: str, words: str) -> None:
    err = rejects(request(tensor))
    assert err.field == field
    assert words in err.detail
    if "name" in tensor:
        assert "'x'" in err.detail


def test_decode_rejects_duplicate_input_names() -> None:
    err = rejects(request(fp32("x"), fp32("x")))
    assert err.field == "inputs[1].name"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"id": 5}, "id"),
        ({"parameters": [1]}, "parameters"),
        ({"parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output"),
        ({"inputs": {"x": 1}}, "inputs"),
        ({"inputs": [5]}, "inputs[0]"),
        ({"outputs": "y"}, "outputs"),
        ({"outputs": [{"name": ""}]}, "outputs[0].name"),
        ({"outputs": [{"name": "y"}, {"name": "y"}]}, "outputs[1].name"),
        ({"outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}, "outputs[0].parameters.binary_data"),
        (
            {"outputs": [{"name": "y", "parameters": {"classification": 3}}]},
            "outputs[0].parameters.classification",
        ),
    ],
)
def test_decode_rejects_malformed_request_fields(extra: dict[str, Any], field: str) -> None:
    doc: dict[str, Any] = {"inputs": [fp32()], **extra}
    assert rejects(orjson.dumps(doc)).field == field


def test_decode_response_rejects_malformed_bodies() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_response(b'{"model_name": "m"}', None)
    assert info.value.field == "outputs"
    body = orjson.dumps(
        {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.0]}]}
    )
    with pytest.raises(InvalidInput) as info:
        decode_response(body, None)
    assert info.value.field == "outputs[0].data"
    assert "output 'y'" in info.value.detail


# -------------------------------------------------------------------------------------- metadata


@dataclass
class FakeNodeArg:
    """Stands in for onnxruntime's NodeArg."""

    name: str
    type: str
    shape: list[int | str | None]


def test_model_metadata() -> None:
    meta = model_metadata(
        "iris",
        [1, 2],
        "onnxruntime_onnx",
        [FakeNodeArg("input", "tensor(float)", ["batch", 4]), ("mask", "BOOL", [None, 4])],
        [("label", "tensor(int64)", [-1]), FakeNodeArg("probs", "tensor(double)", ["N", 3])],
    )
    assert meta == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "mask", "datatype": "BOOL", "shape": [-1, 4]},
        ],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probs", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }


# ------------------------------------------------------------------------------ purity and speed


def test_module_is_pure() -> None:
    source = Path(v2.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"fastapi", "starlette", "onnxruntime", "pydantic", "tritonclient"}


@pytest.mark.serial
def test_small_json_tensor_decodes_in_microseconds() -> None:
    body = request(fp32("x", [4, 5], [i * 0.37 for i in range(20)]))
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(500):
            decode_request(body, None, max_elements=MAX)
        best = min(best, (time.perf_counter() - start) / 500)
    assert best < 40e-6, f"decode_request took {best * 1e6:.1f} us"
