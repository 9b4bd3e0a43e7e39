"""The tissue-image stage kinds of pipeline specs, each a thin call of this package's Python functions:

- ``tissue_preprocess`` (an image: TIFF / OME-TIFF, PNG or .npy bytes, or an array) -> the preprocessed
  image as OME-TIFF bytes (uint16, channel names kept). ``channels`` names the channels the image must
  have (fewer is a failure saying so); ``params``: ``low_percentile``, ``high_percentile``,
  ``background_radius``, ``tile`` (of the TIFF written from a file; a multiple of 16, 1024).
- ``tissue_segment`` (an image) -> the label mask (array: ``.npy``, or a tiled uint32 TIFF from a file).
  ``params``: ``channel``, ``diameter``,
  ``threshold``, ``smooth_sigma``, ``min_area``, ``method`` (``threshold`` or ``onnx``: then ``model``,
  ``model_version``, ``input``, ``output`` name a registered model that maps a (1, 1, H, W) float32 tile to
  a probability per pixel), ``probability``, ``tile``.
- ``tissue_cells`` (inputs: [image, mask]) -> the per-cell table, JSON (``format: json``, the default) or
  Parquet bytes (``format: parquet``).
- ``tissue_quality`` (inputs: [image, mask]; the raw image, for saturation) -> the quality report (JSON);
  ``qc`` holds thresholds (``params.QC_THRESHOLDS``), and a sample that breaks one fails with each reason.
- ``tissue_overlay`` (inputs: [image, mask]) -> PNG of the cell outlines on a composite of
  ``params.channels`` (up to three names or indices).
- ``tissue_heatmap`` (a statistics result, JSON) -> PNG of one of its matrices (``params.matrix``:
  ``log_odds``, ``counts``, ``log_odds_test.z``, ``counts_test.z``; ``params.labels`` names the types).

Every kind but ``tissue_heatmap`` (Pillow and numpy only) needs the analysis extra, imported when a stage
runs; a spec naming one is refused without it (``extras``).

The kinds read files (``reads_files``): in a pipeline, each image (the raw scan, a preprocessed image, a
label mask) comes as a local file read by tiles, never whole, and the preprocessed image and the label
mask are written by tiles to the stage's scratch folder as tiled (OME-)TIFFs that become the stored
outputs (``preprocess_file``; ``segment`` with a ``mask_path``, when ``tile`` is a multiple of 16).
``tissue_cells`` and ``tissue_quality`` measure by tiles too; ``tissue_overlay`` draws one PNG of the
whole image, so it reads it whole. Segmentation tiles run on ``analysis_workers`` threads, or on the Dask
scheduler of ``MODELYARD_ANALYSIS_DASK_SCHEDULER`` (not with an ONNX model, which runs in the worker).
Images given as values (bytes, arrays) are read whole, as before.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelyard.analysis.images import (
    ArrayImage,
    Multichannel,
    channel_index,
    close_image,
    open_image,
    require_channels,
)
from modelyard.analysis.params import preprocess_problems, qc_problems, segment_problems
from modelyard.analysis.render import heatmap_png, overlay_png
from modelyard.errors import InvalidInput
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import Item, LocalFile, Outcome, StageEnv, side_by_side, timed
from modelyard.pipelines.stages.batch import load_model

if TYPE_CHECKING:
    from modelyard.analysis.segment import Cells, Predict

IMAGE_TYPES = ("bytes", "array")
MODEL_FIELDS = ("model", "model_version", "input", "output")
FILE_TILE = 1024  # the TIFF tile of a preprocessed image written to a file (a smaller image: its size)


def _params(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    params = doc.get("params", {})
    return params if isinstance(params, Mapping) else {}


def _add(check: Checker, where: str, found: list[tuple[str, str]]) -> None:
    for key, detail in found:
        check.add(f"{where}.params" + (f".{key}" if key else ""), detail)


def _two_inputs(doc: Mapping[str, Any], where: str, check: Checker, what: str) -> None:
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 2:
        check.add(f"{where}.inputs", f"must be two stages: [{what}, the segmentation's mask]")


def _ordered(spec: StageSpec, item: Item) -> list[Any]:
    """The item's inputs in the order the spec lists them."""
    return [item.inputs[name] for name in spec.inputs]


def _mask(value: Any, field: str) -> np.ndarray:
    mask = np.asarray(value)
    if mask.ndim != 2 or mask.dtype.kind not in "iu":
        raise InvalidInput(
            f"{field} must be a label mask (2-D integer array), not {mask.dtype} {mask.shape}", field=field
        )
    return mask


def _open_mask(value: Any, field: str) -> Multichannel:
    """A label mask given as an array, or stored (a ``.npy`` or a TIFF, as bytes or a file), read by
    windows when it is a file."""
    if isinstance(value, np.ndarray):
        return ArrayImage(_mask(value, field)[None], ("cells",))
    mask = open_image(value)
    if mask.shape[0] != 1 or mask.dtype.kind not in "iu":
        close_image(mask)
        raise InvalidInput(
            f"{field} must be a label mask (one channel of integer labels), not {mask.shape[0]} "
            f"channels of {mask.dtype}",
            field=field,
        )
    return mask


def _measure(spec: StageSpec, item: Item) -> tuple[Cells, int]:
    """The cells of a [image, mask] stage's inputs, measured by tiles, and the pixels they cover."""
    from modelyard.analysis.measure import measure_tiled

    image_value, mask_value = _ordered(spec, item)
    image = open_image(image_value)
    try:
        mask = _open_mask(mask_value, f"inputs.{spec.inputs[1]}")
        try:
            return measure_tiled(image, mask)
        finally:
            close_image(mask)
    finally:
        close_image(image)


@dataclass(frozen=True, slots=True)
class Renamed:
    """An image read through with other channel names."""

    image: Multichannel
    channels: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.image.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.image.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int, channel: int | None = None) -> np.ndarray:
        return self.image.read(y0, y1, x0, x1, channel)


def name_channels(image: Multichannel, names: Sequence[str]) -> Multichannel:
    """``image`` with the channel names a spec gives: an image without names of its own takes them (in
    order); one with names must have each of them. Fewer channels than named is ``InvalidInput``."""
    if not names:
        return image
    require_channels(image, names)
    own = image.channels
    if own == tuple(f"ch{i}" for i in range(len(own))):
        return Renamed(image, (*names, *own[len(names) :]))
    missing = [n for n in names if n not in own]
    if missing:
        raise InvalidInput(
            f"the image has no channel {', '.join(map(repr, missing))}; it has {', '.join(own)}",
            field="channels",
        )
    return image


def encode_ome(image: ArrayImage) -> bytes:
    """A 0..1 float image as OME-TIFF bytes (uint16, channel names in the OME metadata)."""
    import tifffile

    from modelyard.analysis.preprocess import OUT_DTYPE, OUT_SCALE

    data = (np.clip(image.data, 0.0, 1.0) * OUT_SCALE + 0.5).astype(OUT_DTYPE)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        data,
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": list(image.channels)}},
        ome=True,
    )
    return buf.getvalue()


class _ImageKind:
    """What the kinds share: one call per event, events of a batch side by side up to ``concurrency``;
    the analysis extra, imported when a stage runs (a spec is refused without it, ``extras``)."""

    name = ""
    fields: frozenset[str] = frozenset()
    extra = "analysis"

    def uses(self, spec: StageSpec) -> Uses:
        """The analysis extra (the segmentation kind may also name a model)."""
        return Uses(extra=self.extra)

    reads_files = True

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        raise NotImplementedError

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """``one`` per event; a failing event fails alone."""
        predict, resolved = None, ""
        if spec.config.get("model"):
            loaded = load_model(env, spec.config)
            if isinstance(loaded, Outcome):
                return [replace(loaded) for _ in items], ""
            predict, resolved = loaded
        call: Callable[[Item], Outcome] = lambda item: timed(lambda: self.one(spec, item, predict, env))  # noqa: E731
        return side_by_side(items, call, spec.limits.concurrency, spec.name), resolved


class PreprocessKind(_ImageKind):
    """``type: tissue_preprocess``: normalise and subtract background; OME-TIFF bytes out."""

    name = "tissue_preprocess"
    fields = frozenset({"channels"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The channel names the image must have and the preprocessing parameters."""
        channels = doc.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            check.add(f"{where}.channels", "must be a list of channel names")
            channels = []
        elif len(set(channels)) != len(channels):
            check.add(f"{where}.channels", "names a channel more than once")
        _add(check, where, preprocess_problems(_params(doc)))
        tile = _params(doc).get("tile", FILE_TILE)
        if not isinstance(tile, int) or isinstance(tile, bool) or not 64 <= tile <= 8192 or tile % 16:
            check.add(f"{where}.params.tile", "must be a multiple of 16, 64..8192")
        return KindConfig({"channels": channels}, IMAGE_TYPES, "bytes")

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        from modelyard.analysis.preprocess import Preprocess, preprocess_file, preprocess_image

        source = _ordered(spec, item)[0]
        opened = open_image(source)
        try:
            image = name_channels(opened, spec.config["channels"])
            pre = Preprocess.from_params(spec.params)
            if isinstance(source, Path) and item.scratch is not None:
                out = item.scratch / "preprocessed.ome.tif"
                largest = -(-max(image.shape[1:]) // 16) * 16
                tile = min(int(spec.params.get("tile", FILE_TILE)), largest)
                preprocess_file(image, out, pre, tile=tile, workers=env.analysis_workers)
                return LocalFile(out, "tif")
            done, _ = preprocess_image(image, pre)
            return encode_ome(done)
        finally:
            close_image(opened)


class SegmentKind(_ImageKind):
    """``type: tissue_segment``: nuclei from one channel; the label mask out."""

    name = "tissue_segment"
    fields = frozenset(MODEL_FIELDS)

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The segmentation parameters, and the model when ``params.method`` is ``onnx``."""
        params = _params(doc)
        _add(check, where, segment_problems(params))
        tile = params.get("tile", 1024)
        if not isinstance(tile, int) or isinstance(tile, bool) or not 64 <= tile <= 8192:
            check.add(f"{where}.params.tile", "must be an integer 64..8192")
        config: dict[str, Any] = {}
        if params.get("method") == "onnx":
            model = doc.get("model")
            if not isinstance(model, str) or not model:
                check.add(f"{where}.model", "method onnx needs the name of a registered model")
            config = {k: doc[k] for k in MODEL_FIELDS if k in doc}
        elif any(k in doc for k in MODEL_FIELDS):
            check.add(f"{where}.model", "a model is used only with params.method: onnx")
        return KindConfig(config, IMAGE_TYPES, "array")

    def uses(self, spec: StageSpec) -> Uses:
        """The segmentation model, with ``method: onnx``."""
        if not spec.config.get("model"):
            return Uses(extra=self.extra)
        return Uses((spec.config["model"], spec.config.get("model_version", "latest")), extra=self.extra)

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        from modelyard.analysis.segment import Segmentation, segment

        source = _ordered(spec, item)[0]
        cfg = Segmentation.from_params(spec.params)
        tile = int(spec.params.get("tile", 1024))
        mask_path = None
        if isinstance(source, Path) and item.scratch is not None and tile % 16 == 0:
            mask_path = item.scratch / "mask.tif"
        image = open_image(source)
        try:
            found = segment(
                image,
                cfg,
                tile=tile,
                predict=predict,
                mask_path=mask_path,
                workers=env.analysis_workers,
                scheduler=env.dask_scheduler if predict is None else None,
            )
        finally:
            close_image(image)
        print(f"{len(found.cells)} cells, threshold {found.threshold:.4g}, {found.tiles} tiles")
        return LocalFile(mask_path, "tif") if mask_path is not None else found.mask


class CellsKind(_ImageKind):
    """``type: tissue_cells``: the per-cell table of [image, mask], JSON or Parquet."""

    name = "tissue_cells"
    fields = frozenset({"format"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """Two inputs and the output format."""
        _two_inputs(doc, where, check, "the image")
        fmt = doc.get("format", "json")
        if fmt not in ("json", "parquet"):
            check.add(f"{where}.format", "must be json or parquet")
            fmt = "json"
        return KindConfig({"format": fmt}, IMAGE_TYPES, "json" if fmt == "json" else "bytes")

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        cells, _ = _measure(spec, item)
        if spec.config["format"] == "parquet":
            return cells.parquet()
        return {"channels": list(cells.channels), "count": len(cells), "cells": cells.rows()}


class QualityKind(_ImageKind):
    """``type: tissue_quality``: the quality report of [image, mask]; ``qc`` thresholds fail the event."""

    name = "tissue_quality"
    fields = frozenset({"qc"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """Two inputs, the nucleus channel (``params.channel``) and the thresholds."""
        _two_inputs(doc, where, check, "the raw image")
        qc = doc.get("qc", {})
        for key, detail in qc_problems(qc):
            check.add(f"{where}.qc" + (f".{key}" if key else ""), detail)
        channel = _params(doc).get("channel", 0)
        if not isinstance(channel, str | int) or isinstance(channel, bool):
            check.add(f"{where}.params.channel", "must be a channel name or index")
        return KindConfig({"qc": dict(qc) if isinstance(qc, Mapping) else {}}, IMAGE_TYPES, "json")

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        from modelyard.analysis import quality

        image_value, _ = _ordered(spec, item)
        image = open_image(image_value)
        try:
            nucleus = channel_index(image, spec.params.get("channel", 0), "params.channel")
            cells, covered = _measure(spec, item)
            _, h, w = image.shape
            found = quality.report(cells, covered, h * w, quality.measure(image, nucleus))
        finally:
            close_image(image)
        print(f"quality: {found}")
        quality.enforce(found, spec.config["qc"])
        return found


class OverlayKind(_ImageKind):
    """``type: tissue_overlay``: the cell outlines of [image, mask] on a channel composite, as PNG."""

    name = "tissue_overlay"
    fields = frozenset()

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """Two inputs and up to three composite channels (``params.channels``)."""
        _two_inputs(doc, where, check, "the image")
        channels = _params(doc).get("channels", [0])
        if (
            not isinstance(channels, list)
            or not 1 <= len(channels) <= 3
            or not all(isinstance(c, str | int) and not isinstance(c, bool) for c in channels)
        ):
            check.add(f"{where}.params.channels", "must be a list of 1 to 3 channel names or indices")
        return KindConfig({}, IMAGE_TYPES, "image")

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        image_value, mask_value = _ordered(spec, item)
        image = open_image(image_value)
        mask = _open_mask(mask_value, f"inputs.{spec.inputs[1]}")
        try:
            picked = [
                channel_index(image, c, f"params.channels[{i}]")
                for i, c in enumerate(spec.params.get("channels", [0]))
            ]
            _, h, w = mask.shape
            return overlay_png(image, mask.read(0, h, 0, w, channel=0), picked)
        finally:
            close_image(image)
            close_image(mask)


MATRICES = ("log_odds", "counts", "log_odds_test.z", "counts_test.z")


def pick_matrix(found: Any, name: str) -> tuple[np.ndarray, int]:
    """The matrix ``name`` (a dotted path) of a statistics result (a stage's parsed JSON output, or the
    event's raw JSON bytes), ``null`` read as NaN, and its size."""
    value: Any = found
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the statistics are not JSON: {exc}", field="inputs") from None
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise InvalidInput(f"the statistics have no {name!r} matrix", field="params.matrix")
        value = value[part]
    matrix = np.array([[np.nan if v is None else v for v in row] for row in value], dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InvalidInput(f"{name} is not a square matrix: {matrix.shape}", field="params.matrix")
    return matrix, matrix.shape[0]


class HeatmapKind(_ImageKind):
    """``type: tissue_heatmap``: one matrix of a statistics result (``params.matrix``: log_odds, counts,
    or a permutation test's z) as a heatmap PNG, rows and columns named by ``params.labels``."""

    name = "tissue_heatmap"
    fields = frozenset()
    extra = ""  # Pillow and numpy only
    reads_files = False  # statistics are JSON, read whole: the raw data as bytes, a stage's output parsed

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The matrix to draw and the type names."""
        params = _params(doc)
        if params.get("matrix", "log_odds") not in MATRICES:
            check.add(f"{where}.params.matrix", f"must be one of {', '.join(MATRICES)}")
        labels = params.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            check.add(f"{where}.params.labels", "must be a list of type names")
        return KindConfig({}, ("json",), "image")

    def one(self, spec: StageSpec, item: Item, predict: Predict | None, env: StageEnv) -> Any:
        name = spec.params.get("matrix", "log_odds")
        matrix, size = pick_matrix(_ordered(spec, item)[0], name)
        labels = list(spec.params.get("labels", []))
        if labels and len(labels) != size:
            raise InvalidInput(
                f"params.labels names {len(labels)} types but the matrix has {size}", field="params.labels"
            )
        return heatmap_png(matrix, labels or [f"type {i}" for i in range(size)], title=name)


KINDS = (PreprocessKind(), SegmentKind(), CellsKind(), QualityKind(), OverlayKind(), HeatmapKind())
for _kind in KINDS:
    register_stage_kind(_kind)
