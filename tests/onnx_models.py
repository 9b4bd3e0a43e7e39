"""Small ONNX models built on the spot (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def logreg(path: Path, features: int = 20, seed: int = 0) -> Path:
    """scikit-learn logistic regression on ``features`` columns, exported with skl2onnx (no ZipMap)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, features)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    clf = LogisticRegression(max_iter=200).fit(x, y)
    onx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())
    return path


def mlp(path: Path, inputs: int = 64, hidden: int = 512, outputs: int = 10, seed: int = 0) -> Path:
    """A two-layer perceptron with a dynamic batch axis (batching pays on it)."""
    rng = np.random.default_rng(seed)
    w1 = helper.make_tensor(
        "w1",
        TensorProto.FLOAT,
        [inputs, hidden],
        rng.normal(size=(inputs, hidden)).astype(np.float32).ravel(),
    )
    b1 = helper.make_tensor("b1", TensorProto.FLOAT, [hidden], np.zeros(hidden, np.float32))
    w2 = helper.make_tensor(
        "w2",
        TensorProto.FLOAT,
        [hidden, outputs],
        rng.normal(size=(hidden, outputs)).astype(np.float32).ravel(),
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[w1, b1, w2],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def identity_types(path: Path) -> Path:
    """Echoes FP16, BOOL, INT64 and STRING inputs, for datatype round trips."""
    kinds = {
        "fp16": TensorProto.FLOAT16,
        "flag": TensorProto.BOOL,
        "count": TensorProto.INT64,
        "text": TensorProto.STRING,
    }
    nodes = [helper.make_node("Identity", [k], [f"{k}_out"]) for k in kinds]
    graph = helper.make_graph(
        nodes,
        "identity_types",
        [helper.make_tensor_value_info(k, t, ["batch", 2]) for k, t in kinds.items()],
        [helper.make_tensor_value_info(f"{k}_out", t, ["batch", 2]) for k, t in kinds.items()],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def image_pool(path: Path) -> Path:
    """1x3x224x224 float image in, per-channel mean out (a stand-in image model)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "image_pool",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def image_embedder(path: Path, dim: int = 16, seed: int = 0) -> Path:
    """Nx3xHxW float image in, a ``dim``-wide embedding out: channel means times a seeded matrix (a stand-in
    image embedding model; another seed is another "version" that places images elsewhere)."""
    weights = np.random.default_rng(seed).normal(size=(3, dim)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["means"]),
        helper.make_node("MatMul", ["means", "weights"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "image_embedder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[helper.make_tensor("weights", TensorProto.FLOAT, [3, dim], weights.ravel().tolist())],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def fixed_batch(path: Path) -> Path:
    """Input fixed at [1, 4]: its batch axis is not dynamic, so it is never batched."""
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def unknown_op(path: Path) -> Path:
    """Valid ONNX that onnxruntime cannot run: an operator from a domain it does not know."""
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example.custom")]
    graph = helper.make_graph(
        nodes,
        "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[*OPSET, helper.make_opsetid("com.example.custom", 1)])
    return _save(model, path)


def constant_bomb(path: Path, side: int = 12_000) -> Path:
    """A file of under 200 bytes that asks for a ``side`` x ``side`` float32 constant (576 MB at 12,000):
    ``y = x + ConstantOfShape([side, side])``, which constant folding would materialise on load."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [side, side])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill", value=one),
        helper.make_node("Add", ["x", "big"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [side, side])],
        initializer=[shape],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def reshape_by_input(path: Path) -> Path:
    """``x`` [N, 2] reshaped to [max(x), -1]: runs while 2N divides by the largest value, and fails at
    run time (an impossible shape, the input's fault) when it does not, e.g. a 7 among two rows."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["mi", "zero"], ["lead"]),
        helper.make_node("Concat", ["lead", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "nothing"], ["none"]),
        helper.make_node("Add", ["x", "none"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "reshape_by_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def allocate_by_input(path: Path) -> Path:
    """``x`` [N, 2] plus nothing, after filling a [max(x[:, 0]), max(x[:, 1])] tensor: values of 2**20
    ask for 4 TiB, which onnxruntime's allocator refuses at once (a memory failure, the system's)."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], axes=[0], keepdims=0),
        helper.make_node("Cast", ["m"], ["dims"], to=TensorProto.INT64),
        helper.make_node("ConstantOfShape", ["dims"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "nothing"], ["none"]),
        helper.make_node("Add", ["x", "none"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "allocate_by_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    return _save(helper.make_model(graph, opset_imports=OPSET), path)


def build_all(folder: Path) -> Path:
    """Every model above, in ``folder``."""
    logreg(folder / "logreg.onnx")
    mlp(folder / "mlp.onnx")
    identity_types(folder / "types.onnx")
    image_pool(folder / "image.onnx")
    fixed_batch(folder / "fixed.onnx")
    unknown_op(folder / "unknown_op.onnx")
    constant_bomb(folder / "bomb.onnx")
    reshape_by_input(folder / "reshape.onnx")
    allocate_by_input(folder / "allocate.onnx")
    return folder
