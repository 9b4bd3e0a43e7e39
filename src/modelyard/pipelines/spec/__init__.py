"""Pipeline specs as validated: a pipeline names the type of its raw data and a DAG of stages. Each stage
is of a registered kind (``kinds``; built in: a built-in ``inferrer``, a registered ``model`` with
pre/post-processing in the spec, a ``python`` callable by import path, or a ``command``); it reads the raw
data and/or other stages' outputs (``inputs``, default ``[raw]``) and produces one typed output, scheduled
by its ``Limits``.

Reading a document into these types, with every problem listed at once, is ``parse`` (the common fields
read by ``fields``, each kind's own by its kind). Pure: no database, no registry (``service.apply`` adds
the checks that need them).
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

RAW = "raw"
TYPES = ("bytes", "image", "json", "array", "table", "any")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = 100 * 365 * 86400


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts per event before the stage run fails, and the wait before the first retry (doubling)."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """How a stage is scheduled: batches running at once (all workers), events per batch, retries, and how
    long one event's call may take (``timeout_seconds``: python and command stages; a command without
    one is killed after an hour, a Python call without one is not bounded). ``concurrency`` also bounds
    the events of one batch of a python or command stage that run side by side (their calls block)."""

    concurrency: int = 4
    batch_size: int = 64
    retry: Retry = field(default_factory=Retry)
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage: what runs (``kind`` + ``config``), what it reads (any one of ``accepts``) and produces,
    and how it is scheduled."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    accepts: tuple[str, ...]
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


# libyaml's parser when installed: ~50x faster than the pure-Python one, and it holds the GIL for less
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_yaml_shape(text: str | bytes, *, max_depth: int, max_nodes: int) -> None:
    """Walk the YAML event stream (no recursion, nothing built) and refuse a document nested deeper than
    ``max_depth``, holding more than ``max_nodes`` values (an alias counts as every value it repeats, so
    anchors cannot multiply a small document into a huge one) or a NUL character."""
    stack: list[tuple[str | None, int]] = []
    sizes: dict[str, int] = {}
    nodes = 0
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.AliasEvent):
            nodes += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent | yaml.SequenceStartEvent | yaml.MappingStartEvent):
            nodes += 1
            if len(stack) + 1 > max_depth:
                raise _refused(f"nested more than {max_depth} levels deep")
            if isinstance(event, yaml.ScalarEvent):
                if "\0" in event.value:
                    raise _refused("holding a NUL character")
                if event.anchor:
                    sizes[event.anchor] = 1
            else:
                stack.append((event.anchor, nodes))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            anchor, start = stack.pop()
            if anchor:
                sizes[anchor] = nodes - start + 1
        if nodes > max_nodes:
            raise _refused(f"more than {max_nodes} values")


def _refused(what: str) -> ValidationFailed:
    detail = f"the spec document is {what}"
    return ValidationFailed(detail, errors=[{"field": "", "detail": detail}])


def check_shape(doc: Any, *, max_depth: int, max_nodes: int) -> None:
    """``ValidationFailed`` when ``doc`` nests deeper than ``max_depth``, holds over ``max_nodes`` values or
    a NUL character (which the database cannot store); walked without recursion, so any depth is safe."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    nodes = 0
    while todo:
        value, depth = todo.pop()
        nodes += 1
        if nodes > max_nodes:
            raise _refused(f"more than {max_nodes} values")
        if depth > max_depth:
            raise _refused(f"nested more than {max_depth} levels deep")
        if isinstance(value, Mapping):
            todo.extend((v, depth + 1) for v in value.values())
            todo.extend((k, depth + 1) for k in value if isinstance(k, str) and "\0" in k)
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and "\0" in value:
            raise _refused("holding a NUL character")


def load_document(
    text: str | bytes, *, json: bool = False, max_depth: int = 32, max_nodes: int = 10_000
) -> Any:
    """Parse YAML or JSON text (JSON is read as YAML unless ``json``); a syntax error, or a document nested
    deeper than ``max_depth`` or holding more than ``max_nodes`` values, is a ``ValidationFailed``.

    CPU-bound on big documents: call it off the event loop.
    """
    if json:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            detail = f"not valid JSON: {exc}"
            raise ValidationFailed(detail, errors=[{"field": "", "detail": detail}]) from None
        check_shape(doc, max_depth=max_depth, max_nodes=max_nodes)
        return doc
    try:
        _check_yaml_shape(text, max_depth=max_depth, max_nodes=max_nodes)
        return yaml.load(text, Loader=LOADER)  # LOADER is a safe loader (C or Python)
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
    if not seconds > 0:
        raise ValueError("must be positive")
    if seconds > MAX_DURATION:  # also infinity, which has no int
        raise ValueError(f"must be at most {MAX_DURATION // UNITS['d']} days")
    return int(seconds)


def compatible(produced: str, accepted: str) -> bool:
    """Whether an output of type ``produced`` may feed an input of type ``accepted``.

    ``bytes`` and ``image`` feed each other (an image is encoded bytes; bytes are decoded as an image,
    and an event whose bytes are not one fails with that reason); ``any`` matches everything.
    """
    if "any" in (produced, accepted) or produced == accepted:
        return True
    return {produced, accepted} == {"bytes", "image"}


def spec_hash(doc: Mapping[str, Any]) -> str:
    """A stable hash of a spec document (applying the same document twice makes no new version)."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
