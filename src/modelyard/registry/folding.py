"""How many bytes an ONNX graph's constants take once computed: what constant folding materialises.

A node whose inputs are all constants (initializers that are not graph inputs, ``Constant`` outputs,
outputs of other such nodes) is computed when onnxruntime builds a session with its default
optimisations. The size of what it makes comes from shape inference (with data propagation) or, for
the nodes that make large tensors from small ones (``ConstantOfShape``, ``Expand``, ``Tile``), from
their constant shape inputs directly. Nothing is computed here: shapes are only multiplied.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
"""Operators never folded: their output differs from run to run."""
SMALL_INTS = 1024
"""Integer constants up to this many elements are read as values (shapes, repeats)."""
Shape = tuple[int, ...]


def largest_folded(proto: onnx.ModelProto) -> tuple[int, onnx.NodeProto | None, int]:
    """Bytes of every tensor computed from constants alone, the node making the most, and its bytes."""
    graph = proto.graph
    state = _Constants(_inferred_types(proto))
    graph_inputs = {i.name for i in graph.input}
    for init in graph.initializer:
        if init.name not in graph_inputs:  # an initializer that is also an input is a default, not folded
            state.add_tensor(init.name, init)
    total, top, top_bytes = 0, None, 0
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
            continue
        if not all(name in state.known for name in node.input):
            continue
        made = sum(state.add_output(name, shape, dtype) for name, shape, dtype in _outputs(node, state))
        total += made
        if made > top_bytes:
            top, top_bytes = node, made
    return total, top, top_bytes


class _Constants:
    """What is known of the constants so far: names, static shapes, element types, small int values."""

    def __init__(self, types: Mapping[str, onnx.TypeProto]):
        self.types = types
        self.known: set[str] = {""}  # an omitted optional input is no runtime value
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self.values: dict[str, np.ndarray] = {}

    def add_tensor(self, name: str, tensor: TensorProto) -> None:
        self.known.add(name)
        self.shapes[name] = tuple(tensor.dims)
        self.dtypes[name] = tensor.data_type
        self.add_value(name, tensor)

    def add_value(self, name: str, tensor: TensorProto) -> None:
        """Keep a small integer tensor's values (a shape or repeats another node may read)."""
        small = math.prod(tensor.dims) <= SMALL_INTS
        if small and tensor.data_type in (TensorProto.INT64, TensorProto.INT32):
            self.values[name] = numpy_helper.to_array(tensor)

    def add_output(self, name: str, shape: Shape | None, dtype: int | None) -> int:
        """Record a folded output; its bytes (0 when its shape is not known)."""
        self.known.add(name)
        if shape is None or dtype is None:
            shape, dtype = self.inferred(name)
        if shape is None or dtype is None:
            return 0
        self.shapes[name], self.dtypes[name] = shape, dtype
        return math.prod(shape) * _itemsize(dtype)

    def inferred(self, name: str) -> tuple[Shape | None, int | None]:
        kind = self.types.get(name)
        if kind is None or not kind.HasField("tensor_type"):
            return None, None
        tensor = kind.tensor_type
        if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in tensor.shape.dim):
            return None, tensor.elem_type
        return tuple(max(d.dim_value, 0) for d in tensor.shape.dim), tensor.elem_type


def _outputs(node: onnx.NodeProto, state: _Constants) -> Iterator[tuple[str, Shape | None, int | None]]:
    """Each output's name, shape and element type where the node's own inputs tell them (else None)."""
    attrs = {a.name: a for a in node.attribute}
    first = node.input[0] if node.input else ""
    if node.op_type == "Constant" and "value" in attrs:
        t = attrs["value"].t
        state.add_value(node.output[0], t)
        yield node.output[0], tuple(t.dims), t.data_type
    elif node.op_type == "Constant" and "sparse_value" in attrs:
        sparse = attrs["sparse_value"].sparse_tensor
        yield node.output[0], tuple(sparse.dims), sparse.values.data_type
    elif node.op_type == "ConstantOfShape" and first in state.values:
        dtype = attrs["value"].t.data_type if "value" in attrs else TensorProto.FLOAT
        yield node.output[0], _dims(state.values[first]), dtype
    elif node.op_type == "Expand" and first in state.shapes and node.input[1] in state.values:
        try:
            shape = np.broadcast_shapes(state.shapes[first], _dims(state.values[node.input[1]]))
        except ValueError:
            shape = None
        yield node.output[0], shape, state.dtypes.get(first)
    elif node.op_type == "Tile" and first in state.shapes and node.input[1] in state.values:
        repeats = _dims(state.values[node.input[1]])
        shape = tuple(a * b for a, b in zip(state.shapes[first], repeats, strict=False))
        yield node.output[0], shape, state.dtypes.get(first)
    else:
        for name in node.output:
            if name:
                yield name, None, None


def _dims(values: np.ndarray) -> Shape:
    return tuple(max(int(v), 0) for v in values.ravel())


def _inferred_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    try:
        graph = onnx.shape_inference.infer_shapes(proto, data_prop=True).graph
    except Exception:  # sizes then come from the constant shape inputs alone
        return {}
    return {v.name: v.type for v in [*graph.value_info, *graph.output]}


def _itemsize(dtype: int) -> int:
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(dtype)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 8  # strings and unknown types: at least a pointer an element
