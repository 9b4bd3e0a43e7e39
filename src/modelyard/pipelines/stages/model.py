"""The ``model`` stage kind: a registered model over a batch, images preprocessed as the spec declares (or
array inputs stacked), outputs post-processed (softmax, L2-normalised, top-k with labels)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from modelyard.inferrers import features
from modelyard.inferrers.features import Preprocess, l2_normalise, preprocess
from modelyard.inferrers.inputs import read_input, reading_bytes
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import Item, Outcome, StageEnv, single, timed
from modelyard.pipelines.stages.batch import load_model, read_within

POSTPROCESS = {"l2_normalise", "softmax", "top_k", "labels"}


def _postprocess_config(post: Any, where: str, check: Checker) -> str:
    """Check a ``postprocess`` mapping; the type the stage then produces."""
    if not isinstance(post, Mapping):
        check.add(f"{where}.postprocess", f"must be a mapping of {', '.join(sorted(POSTPROCESS))}")
        return "array"
    for key in post:
        if key not in POSTPROCESS:
            check.add(
                f"{where}.postprocess.{key}", f"unknown field (known: {', '.join(sorted(POSTPROCESS))})"
            )
    produces = "array"
    if "top_k" in post:
        check.integer(post["top_k"], f"{where}.postprocess.top_k", 1, 1000)
        produces = "json"
    if "labels" in post:
        labels = post["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            check.add(f"{where}.postprocess.labels", "must be a list of strings")
        produces = "json"
    return produces


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


class ModelKind:
    """``type: model``: ``model`` (+ ``model_version``, ``input``, ``output``) names a registered model;
    with ``preprocess`` it reads images, without it arrays; ``postprocess`` may make its output JSON."""

    name = "model"
    fields = frozenset({"model", "model_version", "input", "output", "preprocess", "postprocess"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The model named, its pre/post-processing, and the types these make it read and produce."""
        model = doc.get("model")
        if not isinstance(model, str) or not model:
            check.add(f"{where}.model", "the name of a registered model is required")
        version = doc.get("model_version", "latest")
        if not (
            version == "latest"
            or (isinstance(version, int) and not isinstance(version, bool) and version > 0)
        ):
            check.add(f"{where}.model_version", "must be a version number or latest")
        for key in ("input", "output"):
            if key in doc and not isinstance(doc[key], str):
                check.add(f"{where}.{key}", "must be the name of a model " + key)
        config: dict[str, Any] = {"model": model, "model_version": version}
        config |= {k: doc[k] for k in ("input", "output") if k in doc}
        accepts = "array"
        if "preprocess" in doc:
            accepts = "image"
            for key, detail in features.problems(doc["preprocess"]):
                check.add(f"{where}.preprocess" + (f".{key}" if key else ""), detail)
            config["preprocess"] = doc["preprocess"]
        produces = "array"
        post = doc.get("postprocess")
        if post is not None:
            produces = _postprocess_config(post, where, check)
            if isinstance(post, Mapping):
                config["postprocess"] = dict(post)
        return KindConfig(config, (accepts,), produces)

    def uses(self, spec: StageSpec) -> Uses:
        """The model it runs."""
        return Uses((spec.config["model"], spec.config.get("model_version", "latest")))

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """The model over the batch (images preprocessed as declared, or arrays stacked)."""
        cfg = spec.config
        loaded = load_model(env, cfg)
        if isinstance(loaded, Outcome):
            return [replace(loaded) for _ in items], ""
        predict, resolved = loaded
        post = cfg.get("postprocess") or {}

        def infer(batch: np.ndarray) -> list[Any]:
            rows = np.asarray(predict(batch), dtype=np.float32).reshape(len(batch), -1)
            return _postprocess(rows, post)

        if "preprocess" in cfg:
            pre = Preprocess.from_params(cfg["preprocess"])
            read = partial(read_input, "image", limits=env.images)
            size = partial(reading_bytes, "image", limits=env.images)
            run = lambda good: infer(preprocess(good, pre))  # noqa: E731
            return read_within(items, read, size, env.image_budget, run), resolved
        batch = timed(lambda: infer(np.stack([np.asarray(single(i), dtype=np.float32) for i in items])))
        if batch.error is not None:
            return [
                Outcome(error=batch.error, trace=batch.trace, logs=batch.logs, seconds=batch.seconds)
                for _ in items
            ], resolved
        share = batch.seconds / len(items)
        return [Outcome(value=v, logs=batch.logs, seconds=share) for v in batch.value], resolved


register_stage_kind(ModelKind())
