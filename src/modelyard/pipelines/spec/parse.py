"""Pipeline specs parsed from YAML or JSON and validated as a whole, every problem listed at once.

Validation finds unknown stage types and fields, inputs that name no stage, cycles, and edges whose
upstream output type is not what the stage reads (each stage kind reads its own fields: ``kinds``).
Pure: no database, no registry (``service.apply`` adds the checks that need them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.errors import ValidationFailed
from modelyard.pipelines.spec import (
    NAME,
    RAW,
    Limits,
    PipelineSpec,
    StageSpec,
    compatible,
    parse_duration,
)
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import stage_kinds

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
MAX_STAGES = 100


def _stage_docs(raw: Any, check: Checker) -> list[tuple[str, Any]]:
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


def _stage(name: str, doc: Any, defaults: Limits, check: Checker) -> StageSpec | None:
    where = f"stages.{name}"
    if not NAME.match(name) or name == RAW:
        check.add(
            where, "a stage name is 1-63 of a-z, 0-9, _ and -, starting with a letter or digit, not raw"
        )
    if not isinstance(doc, Mapping):
        check.add(where, "must be a mapping with at least a type")
        return None
    kinds = stage_kinds()
    kind_name = doc.get("type")
    kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        check.add(f"{where}.type", f"unknown stage type {kind_name!r} (one of {', '.join(kinds)})")
        return None
    allowed = COMMON | kind.fields
    for key in doc:
        if key not in allowed:
            check.add(
                f"{where}.{key}",
                f"unknown field for a {kind.name} stage (known: {', '.join(sorted(allowed))})",
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
    read = kind.parse(doc, where, check)
    return StageSpec(
        name=name,
        kind=kind.name,
        inputs=tuple(inputs),
        accepts=read.accepts,
        produces=read.produces,
        version=str(version),
        config=read.config,
        params=dict(params),
        limits=check.limits(doc, where, defaults),
        cache=cache,
    )


def _order(stages: dict[str, StageSpec], check: Checker) -> list[str] | None:
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


def _raw(doc: Any, defaults: Limits, check: Checker) -> tuple[str, Limits]:
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
    check = Checker()
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


def _check_edges(stages: dict[str, StageSpec], raw_type: str, declared: set[str], check: Checker) -> None:
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
            if not any(compatible(produced, accepted) for accepted in spec.accepts):
                check.add(
                    where,
                    f"stage {name} reads {' or '.join(spec.accepts)} but {upstream} produces {produced}",
                )
