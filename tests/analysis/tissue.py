"""Synthetic tissue images for the image-analysis tests: discs of known centres on a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def disc_centres(height: int, width: int, radius: int, count: int, seed: int = 0) -> np.ndarray:
    """Up to ``count`` centres at least ``2 * radius + 3`` apart, inside the image (rejection sampling)."""
    rng = np.random.default_rng(seed)
    gap = 2 * radius + 3
    found: list[tuple[float, float]] = []
    for _ in range(count * 50):
        y, x = rng.uniform(radius + 1, height - radius - 1), rng.uniform(radius + 1, width - radius - 1)
        if all((y - a) ** 2 + (x - b) ** 2 >= gap * gap for a, b in found):
            found.append((y, x))
            if len(found) == count:
                break
    return np.array(found)


def tissue(
    height: int, width: int, centres: np.ndarray, radius: int, channels: int = 3, seed: int = 0
) -> np.ndarray:
    """A (C, H, W) uint16 image: channel 0 bright discs at ``centres``; channel c > 0 bright only in
    every (c+1)-th disc; a slow background gradient and noise everywhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((channels, height, width), dtype=np.float64)
    image += 300 + 200 * (yy / height)  # slow background
    for i, (y, x) in enumerate(centres):
        y0, y1 = max(0, int(y) - radius - 1), min(height, int(y) + radius + 2)
        x0, x1 = max(0, int(x) - radius - 1), min(width, int(x) + radius + 2)
        inside = (yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2 <= radius * radius
        image[0, y0:y1, x0:x1][inside] += 4000
        for c in range(1, channels):
            if i % (c + 1) == 0:
                image[c, y0:y1, x0:x1][inside] += 3000
    image += rng.normal(0, 60, image.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def write_ome(path: Path, image: np.ndarray, names: list[str], tile: int | None = 64) -> Path:
    """``image`` (C, H, W) as an OME-TIFF with channel ``names`` (tiled unless ``tile`` is None)."""
    tifffile.imwrite(
        path,
        image,
        tile=(tile, tile) if tile else None,
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": names}},
    )
    return path


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label masks cut the image into the same cells (ids may differ)."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def probability_model(path: Path, threshold: float = 0.3, steepness: float = 40.0) -> Path:
    """A tiny ONNX segmentation model: (1, 1, H, W) float32 -> a probability per pixel,
    sigmoid(steepness * (x - threshold))."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Sub", ["x", "t"], ["d"]),
        helper.make_node("Mul", ["d", "k"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nuclei",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [
            helper.make_tensor("t", TensorProto.FLOAT, [], [threshold]),
            helper.make_tensor("k", TensorProto.FLOAT, [], [steepness]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
