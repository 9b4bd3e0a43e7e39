"""A stage kind registered from outside ``pipelines/`` (as another part's would be): ``repeat`` reads
bytes and produces ``{"n": len(bytes) * times}``; a ``model`` it names is checked when applying."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses
from modelyard.pipelines.stages import Item, Outcome, StageEnv, single, timed


class RepeatKind:
    """``type: repeat``: ``times`` (1..10) and ``model`` are its own fields."""

    name = "repeat"
    fields = frozenset({"times", "model"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        times = check.integer(doc.get("times"), f"{where}.times", 1, 10)
        return KindConfig({"times": times, "model": doc.get("model")}, ("bytes",), "json")

    def uses(self, spec: StageSpec) -> Uses:
        model = spec.config["model"]
        return Uses() if model is None else Uses((model, "latest"))

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        times = spec.config["times"]
        return [timed(lambda item=item: {"n": len(single(item)) * times}) for item in items], "repeat@1"


REPEAT = RepeatKind()
