"""Reading the fields of one stage: a problem collector with typed readers (numbers, data types,
scheduling limits, retry policies) and the kind-specific config of each stage type. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelyard.inferrers import features
from modelyard.inferrers.builtin import CATALOG, param_problems
from modelyard.pipelines.spec import TYPES, Limits, Retry

CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
POSTPROCESS = {"l2_normalise", "softmax", "top_k", "labels"}

Problem = dict[str, str]


class Checker:
    """Collects problems while reading a document."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, detail: str) -> None:
        self.problems.append({"field": where, "detail": detail})

    def integer(self, value: Any, where: str, low: int, high: int) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.add(where, f"must be an integer {low}..{high}")
        return None

    def number(self, value: Any, where: str, low: float, high: float) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
            return float(value)
        self.add(where, f"must be a number {low:g}..{high:g}")
        return None

    def type_name(self, value: Any, where: str, default: str) -> str:
        if value is None:
            return default
        if value in TYPES:
            return str(value)
        self.add(where, f"unknown data type {value!r} (one of {', '.join(TYPES)})")
        return "any"

    def limits(self, doc: Mapping[str, Any], where: str, base: Limits) -> Limits:
        concurrency, batch_size = base.concurrency, base.batch_size
        retry, timeout = base.retry, base.timeout_seconds
        if "concurrency" in doc:
            concurrency = self.integer(doc["concurrency"], f"{where}.concurrency", 1, 256) or concurrency
        if "batch_size" in doc:
            batch_size = self.integer(doc["batch_size"], f"{where}.batch_size", 1, 1000) or batch_size
        if "timeout_seconds" in doc and doc["timeout_seconds"] is not None:
            timeout = self.number(doc["timeout_seconds"], f"{where}.timeout_seconds", 0.001, 86400)
        if "retry" in doc:
            retry = self.retry(doc["retry"], f"{where}.retry", base.retry)
        return Limits(concurrency, batch_size, retry, timeout)

    def retry(self, doc: Any, where: str, base: Retry) -> Retry:
        if not isinstance(doc, Mapping):
            self.add(where, "must be a mapping of max_attempts, backoff_seconds")
            return base
        for key in doc:
            if key not in ("max_attempts", "backoff_seconds"):
                self.add(f"{where}.{key}", "unknown field (known: max_attempts, backoff_seconds)")
        attempts, backoff = base.max_attempts, base.backoff_seconds
        if "max_attempts" in doc:
            attempts = self.integer(doc["max_attempts"], f"{where}.max_attempts", 1, 20) or attempts
        if "backoff_seconds" in doc:
            found = self.number(doc["backoff_seconds"], f"{where}.backoff_seconds", 0, 3600)
            backoff = backoff if found is None else found
        return Retry(attempts, backoff)


def kind_config(
    kind: str, doc: Mapping[str, Any], where: str, check: Checker
) -> tuple[dict[str, Any], str, str]:
    """The kind-specific config of a stage, the type it reads and the type it produces."""
    if kind == "inferrer":
        name = doc.get("inferrer")
        if name not in CATALOG:
            check.add(f"{where}.inferrer", f"unknown inferrer {name!r} (one of {', '.join(CATALOG)})")
            return {"inferrer": name}, "image", "any"
        for key, detail in param_problems(name, doc.get("params", {})):
            check.add(f"{where}.params" + (f".{key}" if key else ""), detail)
        return {"inferrer": name}, "image", CATALOG[name].produces
    if kind == "model":
        return model_config(doc, where, check)
    if kind == "python":
        target = doc.get("callable")
        if not isinstance(target, str) or not CALLABLE.match(target):
            check.add(f"{where}.callable", "must be an import path like package.module:function")
        accepts = check.type_name(doc.get("input_type"), f"{where}.input_type", "any")
        produces = check.type_name(doc.get("output_type"), f"{where}.output_type", "any")
        return {"callable": target}, accepts, produces
    command = doc.get("command")
    if isinstance(command, str):
        command = command.split()
    if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
        check.add(f"{where}.command", "must be a non-empty list of arguments (or one string)")
    accepts = check.type_name(doc.get("input_type"), f"{where}.input_type", "bytes")
    produces = check.type_name(doc.get("output_type"), f"{where}.output_type", "bytes")
    return {"command": command}, accepts, produces


def model_config(doc: Mapping[str, Any], where: str, check: Checker) -> tuple[dict[str, Any], str, str]:
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        check.add(f"{where}.model", "the name of a registered model is required")
    version = doc.get("model_version", "latest")
    if not (
        version == "latest" or (isinstance(version, int) and not isinstance(version, bool) and version > 0)
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
        if not isinstance(post, Mapping):
            check.add(f"{where}.postprocess", f"must be a mapping of {', '.join(sorted(POSTPROCESS))}")
        else:
            for key in post:
                if key not in POSTPROCESS:
                    check.add(
                        f"{where}.postprocess.{key}",
                        f"unknown field (known: {', '.join(sorted(POSTPROCESS))})",
                    )
            if "top_k" in post:
                check.integer(post["top_k"], f"{where}.postprocess.top_k", 1, 1000)
                produces = "json"
            if "labels" in post:
                labels = post["labels"]
                if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                    check.add(f"{where}.postprocess.labels", "must be a list of strings")
                produces = "json"
            config["postprocess"] = dict(post)
    return config, accepts, produces
