"""The one table of element types agrees with numpy, onnx and onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from modelyard.dtypes import ELEMENT_TYPES, NUMPY_TO_V2, ONNX_TO_V2, V2_TO_NUMPY, numpy_of

ONNX_ENUM = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BF16": TensorProto.BFLOAT16,
    "BYTES": TensorProto.STRING,
}


def test_every_name_maps_one_to_one() -> None:
    assert len({t.v2 for t in ELEMENT_TYPES}) == len({t.numpy for t in ELEMENT_TYPES}) == len(ELEMENT_TYPES)
    for t in ELEMENT_TYPES:
        assert NUMPY_TO_V2[V2_TO_NUMPY[t.v2]] == t.v2
        assert ONNX_TO_V2[t.onnx] == t.v2
        assert numpy_of(t.v2) == numpy_of(t.onnx) == t.numpy


def test_numpy_dtypes_match_onnx_element_types() -> None:
    for t in ELEMENT_TYPES:
        want = np.dtype(helper.tensor_dtype_to_np_dtype(ONNX_ENUM[t.v2]))
        assert t.numpy == want or (t.v2 == "BYTES" and want.kind == "O")


def test_onnx_names_are_what_onnxruntime_reports() -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", [t.v2], [f"{t.v2}_out"]) for t in ELEMENT_TYPES],
        "types",
        [helper.make_tensor_value_info(t.v2, ONNX_ENUM[t.v2], [1]) for t in ELEMENT_TYPES],
        [helper.make_tensor_value_info(f"{t.v2}_out", ONNX_ENUM[t.v2], [1]) for t in ELEMENT_TYPES],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert {i.name: i.type for i in sess.get_inputs()} == {t.v2: t.onnx for t in ELEMENT_TYPES}


def test_unknown_datatypes_fall_back_to_float32() -> None:
    assert numpy_of("seq(tensor(float))") == np.dtype(np.float32)
