"""Running one stage over a batch of events through its registered kind (``spec.kinds``), and what the
built-in kinds share: reading each event's input as a type (an image that is not one fails that event
alone), running once over the readable ones, and binding the model a stage names.

A failure of one event never fails the others; a batch that fails as a whole fails each of its events
with that error.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any

from modelyard.inferrers.features import Predict
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import Item, Outcome, StageEnv, single, timed


def run_stage(spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
    """Run ``spec`` over ``items``: one outcome per item, and what the stage resolved (model version)."""
    return stage_kind(spec.kind).run_batch(spec, items, env)


def read_all(items: list[Item], read: Callable[[Any], Any]) -> tuple[list[Any], list[Outcome | None]]:
    """Each item's single input as ``read`` makes it, or (in the second list) the outcome saying why it
    cannot be read so."""
    values: list[Any] = []
    failed: list[Outcome | None] = []
    for item in items:
        out = timed(lambda item=item: read(single(item)))  # type: ignore[misc]
        values.append(out.value if out.error is None else None)
        failed.append(out if out.error is not None else None)
    return values, failed


def batched(
    items: list[Item],
    values: list[Any],
    failed: list[Outcome | None],
    run: Callable[[list[Any]], list[Any]],
) -> list[Outcome]:
    """Run ``run`` once over the readable values; share its time among them."""
    good = [v for v, fail in zip(values, failed, strict=True) if fail is None]
    results: list[Outcome] = []
    assert len(values) == len(items)
    batch = timed(lambda: run(good)) if good else Outcome(value=[])
    outputs = iter(batch.value or [])
    share = batch.seconds / max(len(good), 1)
    for fail in failed:
        if fail is not None:
            results.append(fail)
        elif batch.error is not None:
            results.append(Outcome(error=batch.error, trace=batch.trace, logs=batch.logs, seconds=share))
        else:
            results.append(Outcome(value=next(outputs), logs=batch.logs, seconds=share))
    return results


def load_model(env: StageEnv, conf: Mapping[str, Any]) -> tuple[Predict, str] | Outcome:
    """The model a stage names (``model``, ``model_version``, ``input``, ``output``): its predict function
    and resolved version, or the failure every item of the batch gets."""
    try:
        return env.model(
            conf["model"], conf.get("model_version", "latest"), conf.get("input"), conf.get("output")
        )
    except Exception as exc:
        return Outcome(error=exc, trace=traceback.format_exc())
