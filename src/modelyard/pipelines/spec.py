"""Pipeline specs: parsed from YAML or JSON, validated as a whole, every problem listed at once.

A spec names a pipeline, the type of its raw data, and a DAG of stages. Each stage is a built-in
``inferrer``, a registered ``model`` (pre/post-processing in the spec), a ``python`` callable by import
path, or a ``command``; it reads the raw data and/or other stages' outputs (``inputs``, default
``[raw]``) and produces one typed output. Validation finds unknown stage types and fields, inputs that
name no stage, cycles, and edges whose upstream output type is not what the stage reads.

Pure: no database, no registry (``service.apply`` adds the checks that need them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from modelyard.errors import ValidationFailed
from modelyard.inferrers import features
from modelyard.inferrers.catalog import CATALOG, param_problems

RAW = "raw"
KINDS = ("inferrer", "model", "python", "command")
TYPES = ("bytes", "image", "json", "array", "any")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TOP_FIELDS = {"name", "description", "raw", "stages", "defaults", "archive_after"}
COMMON = {
    "type",
    "inputs",
    "version",
    "params",
    "concurrency",
    "batch_size",
    "retry",
    "timeout_seconds",
    "cache",
}
KIND_FIELDS = {
    "inferrer": {"inferrer"},
    "model": {"model", "model_version", "input", "output", "preprocess", "postprocess"},
    "python": {"callable", "input_type", "output_type"},
    "command": {"command", "input_type", "output_type"},
}
POSTPROCESS = {"l2_normalise", "softmax", "top_k", "labels"}
MAX_STAGES = 100

Problem = dict[str, str]


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts per event before the stage run fails, and the wait before the first retry (doubling)."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """How a stage is scheduled: batches running at once (all workers), events per batch, retries."""

    concurrency: int = 4
    batch_size: int = 64
    retry: Retry = field(default_factory=Retry)
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage: what runs (``kind`` + ``config``), what it reads and produces, and how it is scheduled."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    accepts: str
    produces: str
    version: str
    config: dict[str, Any]
    params: dict[str, Any]
    limits: Limits
    cache: bool = True

    def fingerprint(self) -> str:
        """Hash of everything that decides the output for given inputs (the content-hash cache key part)."""
        body = {
            "kind": self.kind,
            "version": self.version,
            "config": self.config,
            "params": self.params,
            "inputs": self.inputs,
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A validated pipeline: stages in topological order."""

    name: str
    description: str
    raw_type: str
    raw_limits: Limits
    stages: dict[str, StageSpec]
    archive_after_seconds: int | None
    document: dict[str, Any]

    def stage_limits(self, stage: str) -> Limits:
        """Scheduling limits of ``stage`` (``raw`` included)."""
        return self.raw_limits if stage == RAW else self.stages[stage].limits

    def closure(self, wanted: Iterable[str] | None) -> list[str]:
        """``raw``, the wanted stages and everything they depend on, in topological order (all if None)."""
        if wanted is None:
            return [RAW, *self.stages]
        need: set[str] = set()
        todo = [s for s in wanted if s != RAW]
        while todo:
            name = todo.pop()
            if name not in need:
                need.add(name)
                todo.extend(i for i in self.stages[name].inputs if i != RAW)
        return [RAW, *(s for s in self.stages if s in need)]

    def downstream(self, stage: str) -> list[str]:
        """``stage`` and every stage that depends on it, transitively, in topological order."""
        hit = {stage}
        for name, spec in self.stages.items():
            if any(i in hit for i in spec.inputs):
                hit.add(name)
        return [s for s in [RAW, *self.stages] if s in hit]

    def dependents(self, stage: str) -> list[str]:
        """Stages that read ``stage`` directly."""
        return [name for name, spec in self.stages.items() if stage in spec.inputs]

    def inputs_of(self, stage: str) -> tuple[str, ...]:
        """What ``stage`` reads (nothing for ``raw``)."""
        return () if stage == RAW else self.stages[stage].inputs


def load_document(text: str | bytes) -> Any:
    """Parse YAML or JSON text (JSON is read as YAML); a syntax error is a ``ValidationFailed``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        detail = f"not valid YAML or JSON{line}: {getattr(exc, 'problem', None) or exc}"
        raise ValidationFailed(detail, errors=[{"field": "", "detail": detail}]) from None


def parse_duration(value: Any) -> int | None:
    """Seconds from an int or a string like ``30d``, ``12h``, ``15m``, ``90s``; None for null/never."""
    if value is None or value == "never":
        return None
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration like 7d, 12h, 30m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = DURATION.match(str(value))
        if not match:
            raise ValueError("must be seconds or a duration like 7d, 12h, 30m")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be positive")
    return int(seconds)


def compatible(produced: str, accepted: str) -> bool:
    """Whether an output of type ``produced`` may feed an input of type ``accepted``.

    ``bytes`` and ``image`` feed each other (an image is encoded bytes; bytes are decoded as an image,
    and an event whose bytes are not one fails with that reason); ``any`` matches everything.
    """
    if "any" in (produced, accepted) or produced == accepted:
        return True
    return {produced, accepted} == {"bytes", "image"}


class _Checker:
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


def _stage_docs(raw: Any, check: _Checker) -> list[tuple[str, Any]]:
    """(name, body) pairs from a mapping of stages or a list of stages with ``name``."""
    if isinstance(raw, Mapping):
        return [(str(k), v) for k, v in raw.items()]
    if isinstance(raw, list):
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                out.append((item["name"], {k: v for k, v in item.items() if k != "name"}))
            else:
                check.add(f"stages[{i}].name", "every stage in a list needs a name")
        return out
    check.add("stages", "must be a mapping of stage name to stage, or a list of stages with names")
    return []


def _kind_config(
    kind: str, doc: Mapping[str, Any], where: str, check: _Checker
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
        return _model_config(doc, where, check)
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


def _model_config(doc: Mapping[str, Any], where: str, check: _Checker) -> tuple[dict[str, Any], str, str]:
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


def _stage(name: str, doc: Any, defaults: Limits, check: _Checker) -> StageSpec | None:
    where = f"stages.{name}"
    if not NAME.match(name) or name == RAW:
        check.add(
            where, "a stage name is 1-63 of a-z, 0-9, _ and -, starting with a letter or digit, not raw"
        )
    if not isinstance(doc, Mapping):
        check.add(where, "must be a mapping with at least a type")
        return None
    kind = doc.get("type")
    if kind not in KINDS:
        check.add(f"{where}.type", f"unknown stage type {kind!r} (one of {', '.join(KINDS)})")
        return None
    allowed = COMMON | KIND_FIELDS[kind]
    for key in doc:
        if key not in allowed:
            check.add(
                f"{where}.{key}", f"unknown field for a {kind} stage (known: {', '.join(sorted(allowed))})"
            )
    inputs = doc.get("inputs", [RAW])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        check.add(f"{where}.inputs", "must be a non-empty list of stage names (raw is the raw data)")
        inputs = [RAW]
    elif len(set(inputs)) != len(inputs):
        check.add(f"{where}.inputs", "lists a stage more than once")
    params = doc.get("params", {})
    if not isinstance(params, Mapping):
        check.add(f"{where}.params", "must be a mapping")
        params = {}
    version = doc.get("version", "1")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or str(version) == "":
        check.add(f"{where}.version", "must be a non-empty string or number")
        version = "1"
    cache = doc.get("cache", True)
    if not isinstance(cache, bool):
        check.add(f"{where}.cache", "must be true or false")
        cache = True
    config, accepts, produces = _kind_config(kind, doc, where, check)
    return StageSpec(
        name=name,
        kind=kind,
        inputs=tuple(inputs),
        accepts=accepts,
        produces=produces,
        version=str(version),
        config=config,
        params=dict(params),
        limits=check.limits(doc, where, defaults),
        cache=cache,
    )


def _order(stages: dict[str, StageSpec], check: _Checker) -> list[str] | None:
    """Topological order (declaration order among equals); reports each cycle and returns None if any."""
    indegree = {n: sum(1 for i in s.inputs if i in stages and i != n) for n, s in stages.items()}
    order: list[str] = []
    ready = [n for n in stages if indegree[n] == 0]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in stages:
            if other != name and name in stages[other].inputs:
                indegree[other] -= 1
                if indegree[other] == 0:
                    ready.append(other)
    if len(order) == len(stages):
        return order
    stuck = [n for n in stages if n not in order]
    seen: set[str] = set()
    for start in stuck:
        if start in seen:
            continue
        path, node = [start], start
        while True:  # walk upstream inside the stuck set until a stage repeats: that is a cycle
            node = next(i for i in stages[node].inputs if i in stages and i != node and i not in order)
            if node in path:
                cycle = path[path.index(node) :]
                seen.update(cycle)
                loop = " -> ".join([*reversed(cycle), cycle[-1]])
                check.add(f"stages.{cycle[0]}.inputs", f"stages form a cycle: {loop}")
                break
            path.append(node)
    return None


def _raw(doc: Any, defaults: Limits, check: _Checker) -> tuple[str, Limits]:
    if doc is None or isinstance(doc, str):
        return check.type_name(doc, "raw", "bytes"), defaults
    if not isinstance(doc, Mapping):
        check.add("raw", "must be a data type or a mapping with type, concurrency, batch_size, retry")
        return "bytes", defaults
    for key in doc:
        if key not in ("type", "concurrency", "batch_size", "retry", "timeout_seconds"):
            check.add(
                f"raw.{key}", "unknown field (known: type, concurrency, batch_size, retry, timeout_seconds)"
            )
    return check.type_name(doc.get("type"), "raw.type", "bytes"), check.limits(doc, "raw", defaults)


def parse_spec(doc: Any, *, defaults: Limits | None = None) -> PipelineSpec:
    """Validate a pipeline document; raises ``ValidationFailed`` listing every problem found."""
    check = _Checker()
    if not isinstance(doc, Mapping):
        check.add("", "a pipeline spec is a mapping with name and stages")
        raise ValidationFailed("the pipeline spec has 1 problem", errors=check.problems)
    for key in doc:
        if key not in TOP_FIELDS:
            check.add(str(key), f"unknown field (known: {', '.join(sorted(TOP_FIELDS))})")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        check.add("name", "a pipeline name is 1-63 of a-z, 0-9, _ and -, starting with a letter or digit")
    base = defaults or Limits()
    if "defaults" in doc:
        if isinstance(doc["defaults"], Mapping):
            for key in doc["defaults"]:
                if key not in ("concurrency", "batch_size", "retry", "timeout_seconds"):
                    check.add(
                        f"defaults.{key}",
                        "unknown field (known: concurrency, batch_size, retry, timeout_seconds)",
                    )
            base = check.limits(doc["defaults"], "defaults", base)
        else:
            check.add("defaults", "must be a mapping")
    raw_type, raw_limits = _raw(doc.get("raw"), base, check)
    archive_after = None
    try:
        archive_after = parse_duration(doc.get("archive_after"))
    except ValueError as exc:
        check.add("archive_after", str(exc))
    description = doc.get("description", "")
    if not isinstance(description, str):
        check.add("description", "must be a string")
        description = ""
    stages: dict[str, StageSpec] = {}
    pairs = _stage_docs(doc.get("stages"), check)
    if (not pairs and "stages" in doc) or "stages" not in doc:
        check.add("stages", "a pipeline needs at least one stage")
    if len(pairs) > MAX_STAGES:
        check.add("stages", f"at most {MAX_STAGES} stages")
    for stage_name, body in pairs:
        if stage_name in stages:
            check.add(f"stages.{stage_name}", "a stage of this name is declared more than once")
            continue
        spec = _stage(stage_name, body, base, check)
        if spec is not None:
            stages[stage_name] = spec
    _check_edges(stages, raw_type, {n for n, _ in pairs}, check)
    order = _order(stages, check)
    if check.problems:
        count = len(check.problems)
        raise ValidationFailed(
            f"the pipeline spec has {count} problem{'s' if count > 1 else ''}: {check.problems[0]['field']}: "
            f"{check.problems[0]['detail']}",
            errors=check.problems,
        )
    assert order is not None and isinstance(name, str)
    return PipelineSpec(
        name=name,
        description=description,
        raw_type=raw_type,
        raw_limits=raw_limits,
        stages={n: stages[n] for n in order},
        archive_after_seconds=archive_after,
        document=dict(doc),
    )


def _check_edges(stages: dict[str, StageSpec], raw_type: str, declared: set[str], check: _Checker) -> None:
    """Every input names a stage (or raw) and its output type is one the stage reads."""
    for name, spec in stages.items():
        for i, upstream in enumerate(spec.inputs):
            where = f"stages.{name}.inputs[{i}]"
            if upstream == name:
                check.add(where, f"stage {name} reads itself")
                continue
            if upstream == RAW:
                produced = raw_type
            elif upstream in stages:
                produced = stages[upstream].produces
            else:
                if upstream not in declared:
                    check.add(where, f"input {upstream!r} is not a stage of this pipeline (nor raw)")
                continue
            if not compatible(produced, spec.accepts):
                check.add(
                    where,
                    f"stage {name} reads {spec.accepts} but {upstream} produces {produced}",
                )


def spec_hash(doc: Mapping[str, Any]) -> str:
    """A stable hash of a spec document (applying the same document twice makes no new version)."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
