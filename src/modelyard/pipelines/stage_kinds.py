"""Running one stage over a batch of events, by kind: built-in inferrers, registered models (with the
spec's pre/post-processing), Python callables by import path, and commands (``stage_command``).

A failure of one event never fails the others; a model batch that fails as a whole fails each of its
events with that error. Python and command stages call once per event, each call bounded by the stage's
``timeout_seconds``: a Python call past it is abandoned (see ``_call_within``), a command is killed with
what it started; either way that event's run fails with error type ``timeout`` and the batch goes on.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from modelyard.inferrers import catalog
from modelyard.inferrers.features import Predict, Preprocess, l2_normalise, preprocess
from modelyard.inferrers.images import decode_image
from modelyard.pipelines.capture import STAGE_LOGGER
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.stage_command import run_command
from modelyard.pipelines.stages import Item, Outcome, StageCall, StageEnv, StageTimeout, single, timed


def _decode_all(
    items: list[Item], draft_side: int | None = None
) -> tuple[list[Image.Image | None], list[Outcome | None]]:
    """Each item's single input decoded as an image (JPEGs at reduced scale down to ``draft_side``, when
    given), or the outcome explaining why it is not one."""
    images: list[Image.Image | None] = []
    failed: list[Outcome | None] = []
    for item in items:
        out = timed(lambda item=item: decode_image(bytes(single(item)), draft_side=draft_side))  # type: ignore[misc]
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
    batch = timed(lambda: run(good)) if good else Outcome(value=[])
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
    images, failed = _decode_all(items, catalog.CATALOG[name].draft_side)
    if catalog.CATALOG[name].needs_model:
        loaded = _load_model(env, spec.params)
        if isinstance(loaded, Outcome):
            return [f or replace(loaded) for f in failed], ""
        predict, resolved = loaded
    return _batched(
        items, images, failed, lambda good: catalog.run(name, good, spec.params, predict)
    ), resolved


def _load_model(env: StageEnv, conf: Mapping[str, Any]) -> tuple[Predict, str] | Outcome:
    """The model a stage names (``model``, ``model_version``, ``input``, ``output``): its predict function
    and resolved version, or the failure every item of the batch gets."""
    try:
        return env.model(
            conf["model"], conf.get("model_version", "latest"), conf.get("input"), conf.get("output")
        )
    except Exception as exc:
        return Outcome(error=exc, trace=traceback.format_exc())


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
    loaded = _load_model(env, cfg)
    if isinstance(loaded, Outcome):
        return [replace(loaded) for _ in items], ""
    predict, resolved = loaded
    post = cfg.get("postprocess") or {}

    def infer(batch: np.ndarray) -> list[Any]:
        rows = np.asarray(predict(batch), dtype=np.float32).reshape(len(batch), -1)
        return _postprocess(rows, post)

    if "preprocess" in cfg:
        pre = Preprocess.from_params(cfg["preprocess"])
        images, failed = _decode_all(items)
        return _batched(items, images, failed, lambda good: infer(preprocess(good, pre))), resolved
    batch = timed(lambda: infer(np.stack([np.asarray(single(i), dtype=np.float32) for i in items])))
    if batch.error is not None:
        return [
            Outcome(error=batch.error, trace=batch.trace, logs=batch.logs, seconds=batch.seconds)
            for _ in items
        ], resolved
    share = batch.seconds / len(items)
    return [Outcome(value=v, logs=batch.logs, seconds=share) for v in batch.value], resolved


def _call_within(fn: Callable[[], Any], limit: float, what: str) -> Outcome:
    """Call ``fn`` in a daemon thread of its own and wait for it at most ``limit`` seconds.

    A Python thread cannot be killed: a call still running at the limit is abandoned. Its thread runs on
    until the call returns by itself (what it returns then is dropped; what it does meanwhile, it does),
    while the stage run fails with a ``timeout`` error carrying what the call printed so far and where it
    was, and the batch goes on with the next event.
    """
    logs: list[io.StringIO] = []
    result: list[Outcome] = []
    done = threading.Event()

    def call() -> None:
        result.append(timed(fn, logs_to=logs))
        done.set()

    thread = threading.Thread(target=call, name=f"stage-{what}", daemon=True)
    thread.start()
    if done.wait(limit):
        return result[0]
    frame = sys._current_frames().get(thread.ident or -1)
    where = "".join(traceback.format_stack(frame)) if frame is not None else ""
    error = StageTimeout(
        f"stage {what} did not return within its timeout_seconds of {limit:g} s; the call was abandoned"
    )
    return Outcome(
        error=error,
        trace=f"the call was abandoned here:\n{where}" if where else None,
        logs=logs[0].getvalue() if logs else "",
        seconds=limit,
    )


def run_python(spec: StageSpec, items: list[Item], env: StageEnv) -> list[Outcome]:
    """A Python callable, once per event, its prints and log records captured per event; each call is
    bounded by the stage's ``timeout_seconds`` (if set) as ``_call_within`` says."""
    log = logging.getLogger(STAGE_LOGGER).getChild(spec.name)
    try:
        fn = env.callable(spec.config["callable"])
    except Exception as exc:
        trace = traceback.format_exc()
        return [Outcome(error=exc, trace=trace) for _ in items]
    limit = spec.limits.timeout_seconds
    results = []
    for item in items:
        call = StageCall(item.event, item.event_id, item.params, spec.params, item.inputs, log)
        bound = partial(fn, call)
        results.append(timed(bound) if limit is None else _call_within(bound, limit, spec.name))
    return results


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
