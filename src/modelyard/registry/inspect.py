"""Checks of an uploaded ONNX file, and its signature, without letting the file take the memory it asks for.

A file can be tiny and still ask for gigabytes: a ``ConstantOfShape`` of 12,000 x 12,000 is under 200
bytes, and onnxruntime's constant folding materialises it (576 MB, and again while folding) as soon as a
session is built with the default optimisations. So the checks are, in order, each bounded:

1. parse with ``onnx`` (external data not loaded): not ONNX, or truncated;
2. ``onnx.checker``: an invalid graph;
3. shape inference with data propagation, then the bytes of every tensor the graph computes from
   constants alone (what constant folding would materialise), against ``max_materialised_bytes``:
   refused naming the largest such node (``folding.py``);
4. an onnxruntime session with graph optimisation disabled (it folds nothing and runs nothing): an
   operator or type not runnable here. The signature is read from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from modelyard.dtypes import ONNX_TO_V2
from modelyard.errors import InvalidModelFile
from modelyard.heap import trim_heap
from modelyard.registry.folding import largest_folded


def inspect_model(path: Path, *, max_materialised_bytes: int) -> dict[str, Any]:
    """Check an ONNX file; return its signature or raise ``InvalidModelFile`` saying which check failed."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidModelFile(
            f"file is not a readable ONNX model (not ONNX or truncated): {exc}", field="file"
        ) from exc
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModelFile("file is not an ONNX model: it has no graph", field="file")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise InvalidModelFile(f"ONNX checker rejected the model: {exc}", field="file") from exc
    _refuse_large_constants(proto, max_materialised_bytes)
    try:
        sess = ort.InferenceSession(str(path), _check_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InvalidModelFile(f"onnxruntime cannot run this model: {exc}", field="file") from exc
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    signature = {
        "inputs": [_tensor_spec(i) for i in sess.get_inputs()],
        "outputs": [_tensor_spec(o) for o in sess.get_outputs()],
        "opset": opset,
        "producer": proto.producer_name or None,
    }
    del sess, proto
    trim_heap()  # the check's session is gone; give its memory back rather than keep it in the heap
    return signature


def _refuse_large_constants(proto: onnx.ModelProto, cap: int) -> None:
    total, node, size = largest_folded(proto)
    if total <= cap:
        return
    what = f"node {node.name or '(unnamed)'!r} ({node.op_type}) alone makes {size:,} bytes; " if node else ""
    raise InvalidModelFile(
        f"the model would materialise {total:,} bytes of constants when loaded, over the {cap:,}-byte "
        f"limit (MODELYARD_MAX_MODEL_MATERIALISED_BYTES): {what}constants this large belong in the "
        "file's weights or are computed from inputs",
        field="file",
    )


def _check_options() -> ort.SessionOptions:
    # No graph optimisation: constant folding is what would materialise a hostile file's constants.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def _tensor_spec(arg: Any) -> dict[str, Any]:
    shape = [d if isinstance(d, int) else (d if isinstance(d, str) and d else -1) for d in (arg.shape or [])]
    return {"name": arg.name, "datatype": ONNX_TO_V2.get(arg.type, arg.type), "shape": shape}
