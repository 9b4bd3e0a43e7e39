"""The one table of tensor element types: Open Inference Protocol V2 datatype, numpy dtype, and the
ONNX tensor type as onnxruntime names it (``"tensor(float)"``). Pure: numpy only.

The V2 codec (``serving/v2.py``), the REST format, batch inputs, the session runtime and the registry's
model inspection all read their mappings from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np


@dataclass(frozen=True, slots=True)
class ElementType:
    """One tensor element type under its three names."""

    v2: str
    numpy: np.dtype[Any]
    onnx: str


ELEMENT_TYPES: tuple[ElementType, ...] = (
    ElementType("BOOL", np.dtype(np.bool_), "tensor(bool)"),
    ElementType("UINT8", np.dtype(np.uint8), "tensor(uint8)"),
    ElementType("UINT16", np.dtype(np.uint16), "tensor(uint16)"),
    ElementType("UINT32", np.dtype(np.uint32), "tensor(uint32)"),
    ElementType("UINT64", np.dtype(np.uint64), "tensor(uint64)"),
    ElementType("INT8", np.dtype(np.int8), "tensor(int8)"),
    ElementType("INT16", np.dtype(np.int16), "tensor(int16)"),
    ElementType("INT32", np.dtype(np.int32), "tensor(int32)"),
    ElementType("INT64", np.dtype(np.int64), "tensor(int64)"),
    ElementType("FP16", np.dtype(np.float16), "tensor(float16)"),
    ElementType("FP32", np.dtype(np.float32), "tensor(float)"),
    ElementType("FP64", np.dtype(np.float64), "tensor(double)"),
    ElementType("BF16", np.dtype(ml_dtypes.bfloat16), "tensor(bfloat16)"),
    # V2 BYTES travel as ``bytes``; onnxruntime string tensors hold ``str``: both in object arrays.
    ElementType("BYTES", np.dtype(np.object_), "tensor(string)"),
)

#: V2 datatype -> numpy dtype (native byte order; the V2 wire is little-endian).
V2_TO_NUMPY: Mapping[str, np.dtype[Any]] = {t.v2: t.numpy for t in ELEMENT_TYPES}
#: numpy dtype -> V2 datatype, for the dtypes that map one to one.
NUMPY_TO_V2: Mapping[np.dtype[Any], str] = {t.numpy: t.v2 for t in ELEMENT_TYPES}
#: onnxruntime type string -> V2 datatype.
ONNX_TO_V2: Mapping[str, str] = {t.onnx: t.v2 for t in ELEMENT_TYPES}
#: onnxruntime type string -> numpy dtype.
ONNX_TO_NUMPY: Mapping[str, np.dtype[Any]] = {t.onnx: t.numpy for t in ELEMENT_TYPES}

_FLOAT32 = np.dtype(np.float32)


def numpy_of(datatype: str, default: np.dtype[Any] = _FLOAT32) -> np.dtype[Any]:
    """The numpy dtype of a signature's datatype, V2 (``"FP32"``) or ONNX (``"tensor(float)"``)."""
    return V2_TO_NUMPY.get(datatype) or ONNX_TO_NUMPY.get(datatype) or default
