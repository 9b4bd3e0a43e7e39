"""The ``inferrer`` stage kind: a built-in inferrer (``inferrers.builtin``) over a batch, each event's input
read as the first type the inferrer accepts; ``features`` binds the model its ``params`` name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from modelyard.inferrers import builtin
from modelyard.inferrers.features import Predict
from modelyard.inferrers.inputs import read_input, reading_bytes
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import Item, Outcome, StageEnv
from modelyard.pipelines.stages.batch import load_model, read_within


class InferrerKind:
    """``type: inferrer``: ``inferrer`` names a built-in one; its ``params`` are checked against it."""

    name = "inferrer"
    fields = frozenset({"inferrer"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The inferrer named, what it accepts and produces; an unknown one or bad params are problems."""
        name = doc.get("inferrer")
        if not isinstance(name, str) or name not in builtin.CATALOG:
            known = ", ".join(builtin.CATALOG)
            check.add(f"{where}.inferrer", f"unknown inferrer {name!r} (one of {known})")
            return KindConfig({"inferrer": name}, ("image",), "any")
        for key, detail in builtin.param_problems(name, doc.get("params", {})):
            check.add(f"{where}.params" + (f".{key}" if key else ""), detail)
        info = builtin.CATALOG[name]
        return KindConfig({"inferrer": name}, info.accepts, info.produces)

    def uses(self, spec: StageSpec) -> Uses:
        """The model ``features`` runs (``params.model``), if any."""
        if "model" not in spec.params:
            return Uses()
        return Uses((spec.params["model"], spec.params.get("model_version", "latest")), "params.model")

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """The inferrer over the batch; returns outcomes and what it resolved (a model version)."""
        name = spec.config["inferrer"]
        info = builtin.CATALOG[name]
        predict: Predict | None = None
        resolved = ""
        accepts, limits, draft = info.accepts[0], env.images, info.draft_side
        read = partial(read_input, accepts, limits=limits, draft_side=draft)
        size = partial(reading_bytes, accepts, limits=limits, draft_side=draft)
        if info.needs_model:
            loaded = load_model(env, spec.params)
            if isinstance(loaded, Outcome):  # each event fails with it, unless it cannot even be read
                unread = read_within(items, read, size, env.image_budget, lambda good: good)
                return [f if f.error is not None else replace(loaded) for f in unread], ""
            predict, resolved = loaded
        run = partial(builtin.run, name, params=spec.params, predict=predict)
        return read_within(items, read, size, env.image_budget, run), resolved


register_stage_kind(InferrerKind())
