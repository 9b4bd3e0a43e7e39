"""A small demo model registered on first start (``modelyard serve --demo`` / ``make run``)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from modelyard.context import AppContext
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate

log = logging.getLogger("modelyard.demo")
DEMO_NAME = "demo-iris"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_like_model() -> bytes:
    """A 4-feature, 3-class softmax classifier with fixed weights (no training, no download)."""
    w = np.array([[-0.4, 0.1, 0.3], [0.9, -0.3, -0.6], [-2.2, 0.1, 2.1], [-1.0, -0.9, 1.9]], np.float32)
    b = np.array([8.0, 2.0, -10.0], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "demo_iris",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [4, 3], w.ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, [3], b),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelyard-demo"
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def register_demo(ctx: AppContext) -> None:
    """Register the demo model unless the registry already has models."""
    with ctx.uow() as session:
        _, total = registry.list_models(session=session, limit=1)
        if total:
            return
        registry.create_model(
            session=session,
            data=ModelCreate(
                name=DEMO_NAME,
                description="Demo classifier: 4 flower measurements in, 3 classes out",
                tags=["demo", "tabular"],
                metadata={
                    "task": "classification",
                    "columns": COLUMNS,
                    "classes": ["setosa", "versicolor", "virginica"],
                },
            ),
        )
        data = iris_like_model()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo.onnx"
            path.write_bytes(data)
            registry.add_version(
                session=session,
                storage=ctx.storage,
                name=DEMO_NAME,
                path=path,
                sha256=hashlib.sha256(data).hexdigest(),
            )
    log.info("registered the demo model", extra={"model": DEMO_NAME})
