"""Running one stage over a batch of events: built-in inferrers, registered models (with the spec's
pre/post-processing), Python callables by import path, and commands.

Each event gets an ``Item`` (its inputs, already read) and comes back with an ``Outcome``: the value,
or the exception, its captured logs and how long it took. A failure of one event never fails the
others; a model batch that fails as a whole fails each of its events with that error.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import Image

from modelyard.inferrers import catalog
from modelyard.inferrers.features import Predict, Preprocess, l2_normalise, preprocess
from modelyard.inferrers.images import decode_image
from modelyard.inferrers.onnx import bind_model
from modelyard.pipelines import outputs
from modelyard.pipelines.capture import STAGE_LOGGER, capture
from modelyard.pipelines.spec import RAW, StageSpec
from modelyard.serving.service import InferenceService

# Never handed to a command: the database's and the artifact store's credentials.
SECRET_PREFIXES = ("MODELYARD_", "AWS_", "PG", "DATABASE_URL", "DBOS_")


@dataclass(slots=True)
class Item:
    """One event as a stage sees it: inputs by upstream name (``raw`` is the raw bytes)."""

    event_id: str
    event: str
    params: dict[str, Any]
    inputs: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What a stage made of one event."""

    value: Any = None
    error: BaseException | None = None
    trace: str | None = None
    logs: str = ""
    seconds: float = 0.0


@dataclass(slots=True)
class StageCall:
    """What a Python callable stage receives: ``fn(call) -> value``.

    ``inputs`` maps each upstream stage name (``raw`` for the raw data) to its output: bytes (raw data,
    images), a JSON value, or a numpy array. ``value`` is the only input when there is one.
    """

    event: str
    event_id: str
    params: dict[str, Any]
    stage_params: dict[str, Any]
    inputs: dict[str, Any]
    log: Any = field(default=None)

    @property
    def value(self) -> Any:
        """The single input."""
        if len(self.inputs) != 1:
            raise ValueError(f"the stage has {len(self.inputs)} inputs; read call.inputs[name]")
        return next(iter(self.inputs.values()))

    def image(self, name: str | None = None) -> Image.Image:
        """An input (the single one by default) decoded as an RGB image."""
        data = self.value if name is None else self.inputs[name]
        return data if isinstance(data, Image.Image) else decode_image(bytes(data))


@dataclass(slots=True)
class StageEnv:
    """What stages may use from the process: the inference service and limits."""

    inference: InferenceService
    _callables: dict[str, Callable[[StageCall], Any]] = field(default_factory=dict)
    _models: dict[tuple[Any, ...], tuple[Predict, str]] = field(default_factory=dict)

    def callable(self, path: str) -> Callable[[StageCall], Any]:
        """The function at ``module:attr`` (imported once)."""
        fn = self._callables.get(path)
        if fn is None:
            module, _, attr = path.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            if not callable(obj):
                raise TypeError(f"{path} is not callable")
            fn = self._callables[path] = obj
        return fn

    def model(
        self, name: str, version: Any, input_name: str | None, output_name: str | None
    ) -> tuple[Predict, str]:
        """A bound model and the version it resolved to (``name@N``), re-resolved on every batch."""
        predict, ref = bind_model(
            self.inference, name, version, input_name=input_name, output_name=output_name
        )
        return predict, f"{ref.name}@{ref.version}"


def _single(item: Item) -> Any:
    return next(iter(item.inputs.values()))


def _timed(fn: Callable[[], Any]) -> Outcome:
    start = time.perf_counter()
    with capture() as logs:
        try:
            value = fn()
            out = Outcome(value=value)
        except Exception as exc:
            out = Outcome(error=exc, trace=traceback.format_exc())
    out.logs = logs.getvalue()
    out.seconds = time.perf_counter() - start
    return out


def _decode_all(items: list[Item]) -> tuple[list[Image.Image | None], list[Outcome | None]]:
    """Each item's single input decoded as an image, or the outcome explaining why it is not one."""
    images: list[Image.Image | None] = []
    failed: list[Outcome | None] = []
    for item in items:
        out = _timed(lambda item=item: decode_image(bytes(_single(item))))  # type: ignore[misc]
        images.append(out.value if out.error is None else None)
        failed.append(out if out.error is not None else None)
    return images, failed


def _batched(
    items: list[Item],
    images: list[Image.Image | None],
    failed: list[Outcome | None],
    run: Callable[[list[Image.Image]], list[Any]],
) -> list[Outcome]:
    """Run ``run`` once over the decodable images; share its time among them."""
    good = [img for img in images if img is not None]
    results: list[Outcome] = []
    assert len(images) == len(items)
    batch = _timed(lambda: run(good)) if good else Outcome(value=[])
    values = iter(batch.value or [])
    share = batch.seconds / max(len(good), 1)
    for fail in failed:
        if fail is not None:
            results.append(fail)
        elif batch.error is not None:
            results.append(Outcome(error=batch.error, trace=batch.trace, logs=batch.logs, seconds=share))
        else:
            results.append(Outcome(value=next(values), logs=batch.logs, seconds=share))
    return results


def run_inferrer(spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
    """A built-in inferrer over the batch; returns outcomes and what it resolved (a model version)."""
    name = spec.config["inferrer"]
    predict: Predict | None = None
    resolved = ""
    images, failed = _decode_all(items)
    if catalog.CATALOG[name].needs_model:
        p = spec.params
        try:
            predict, resolved = env.model(
                p["model"], p.get("model_version", "latest"), p.get("input"), p.get("output")
            )
        except Exception as exc:
            trace = traceback.format_exc()
            return [f or Outcome(error=exc, trace=trace) for f in failed], ""
    return _batched(
        items, images, failed, lambda good: catalog.run(name, good, spec.params, predict)
    ), resolved


def _postprocess(rows: np.ndarray, post: Mapping[str, Any]) -> list[Any]:
    if post.get("softmax"):
        z = rows - rows.max(axis=1, keepdims=True)
        e = np.exp(z)
        rows = e / e.sum(axis=1, keepdims=True)
    if post.get("l2_normalise"):
        rows = l2_normalise(rows)
    if "top_k" not in post and "labels" not in post:
        return [np.asarray(r, dtype=np.float32) for r in rows]
    labels = post.get("labels")
    k = int(post.get("top_k", rows.shape[1]))
    out = []
    for r in rows:
        order = np.argsort(-r, kind="stable")[:k]
        out.append(
            [
                {"label": labels[i] if labels and i < len(labels) else int(i), "score": float(r[i])}
                for i in order
            ]
        )
    return out


def run_model(spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
    """A registered model over the batch (images preprocessed as declared, or arrays stacked)."""
    cfg = spec.config
    try:
        predict, resolved = env.model(
            cfg["model"], cfg.get("model_version", "latest"), cfg.get("input"), cfg.get("output")
        )
    except Exception as exc:
        trace = traceback.format_exc()
        return [Outcome(error=exc, trace=trace) for _ in items], ""
    post = cfg.get("postprocess") or {}

    def infer(batch: np.ndarray) -> list[Any]:
        rows = np.asarray(predict(batch), dtype=np.float32).reshape(len(batch), -1)
        return _postprocess(rows, post)

    if "preprocess" in cfg:
        pre = Preprocess.from_params(cfg["preprocess"])
        images, failed = _decode_all(items)
        return _batched(items, images, failed, lambda good: infer(preprocess(good, pre))), resolved
    batch = _timed(lambda: infer(np.stack([np.asarray(_single(i), dtype=np.float32) for i in items])))
    if batch.error is not None:
        return [
            Outcome(error=batch.error, trace=batch.trace, logs=batch.logs, seconds=batch.seconds)
            for _ in items
        ], resolved
    share = batch.seconds / len(items)
    return [Outcome(value=v, logs=batch.logs, seconds=share) for v in batch.value], resolved


def run_python(spec: StageSpec, items: list[Item], env: StageEnv) -> list[Outcome]:
    """A Python callable, once per event, its prints and log records captured per event."""
    import logging

    log = logging.getLogger(STAGE_LOGGER).getChild(spec.name)
    try:
        fn = env.callable(spec.config["callable"])
    except Exception as exc:
        trace = traceback.format_exc()
        return [Outcome(error=exc, trace=trace) for _ in items]
    results = []
    for item in items:
        call = StageCall(item.event, item.event_id, item.params, spec.params, item.inputs, log)
        results.append(_timed(lambda call=call: fn(call)))  # type: ignore[misc]
    return results


class CommandFailed(RuntimeError):
    """A command stage exited with a non-zero status."""


def _command_env(item: Item, spec: StageSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env["STAGE_PARAMS"] = orjson.dumps(spec.params).decode()
    env["EVENT_PARAMS"] = orjson.dumps(item.params).decode()
    env["EVENT_NAME"], env["EVENT_ID"] = item.event, item.event_id
    return env


def _run_command(spec: StageSpec, item: Item) -> Any:
    value = _single(item)
    with tempfile.TemporaryDirectory(prefix="modelyard-stage-") as tmp:
        encoded = outputs.encode(value, "bytes" if isinstance(value, bytes | bytearray) else "any")
        in_path = Path(tmp) / f"input.{encoded.ext}"
        in_path.write_bytes(encoded.data)
        out_path = Path(tmp) / "output"
        argv = [
            a.replace("{input}", str(in_path)).replace("{output}", str(out_path))
            for a in spec.config["command"]
        ]
        proc = subprocess.run(
            argv,
            cwd=tmp,
            env=_command_env(item, spec),
            capture_output=True,
            timeout=spec.limits.timeout_seconds or 3600,
            check=False,
        )
        print(proc.stdout.decode(errors="replace"), end="")
        if proc.stderr:
            print(
                "".join(f"[stderr] {line}" for line in proc.stderr.decode(errors="replace").splitlines(True)),
                end="",
            )
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise CommandFailed(f"{argv[0]} exited with status {proc.returncode}: {' | '.join(tail)}")
        data = out_path.read_bytes() if out_path.exists() else proc.stdout
        return orjson.loads(data) if spec.produces == "json" else data


def run_command(spec: StageSpec, items: list[Item], env: StageEnv) -> list[Outcome]:
    """A command, once per event: input in a temp file (``{input}``), output from ``{output}`` or stdout."""
    return [_timed(lambda item=item: _run_command(spec, item)) for item in items]  # type: ignore[misc]


def run_stage(spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
    """Run ``spec`` over ``items``: one outcome per item, and what the stage resolved (model version)."""
    if spec.kind == "inferrer":
        return run_inferrer(spec, items, env)
    if spec.kind == "model":
        return run_model(spec, items, env)
    if spec.kind == "python":
        return run_python(spec, items, env), ""
    if spec.kind == "command":
        return run_command(spec, items, env), ""
    raise ValueError(f"unknown stage kind {spec.kind!r}")


__all__ = ["RAW", "Item", "Outcome", "StageCall", "StageEnv", "run_stage"]
