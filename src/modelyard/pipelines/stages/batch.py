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
from modelyard.pipelines.stages import Item, Outcome, StageEnv, attempt, single, timed
from modelyard.pipelines.stages.budget import ByteBudget


def run_stage(spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
    """Run ``spec`` over ``items``: one outcome per item, and what the stage resolved (model version)."""
    return stage_kind(spec.kind).run_batch(spec, items, env)


def read_within(
    items: list[Item],
    read: Callable[[Any], Any],
    size: Callable[[Any], int],
    budget: ByteBudget,
    run: Callable[[list[Any]], list[Any]],
) -> list[Outcome]:
    """``read`` each item's single input and ``run`` once over the readable ones, in groups whose reading
    memory (``size``, known before reading) fits in the worker's ``budget``: a group runs and gives its
    memory back before the next is read. Outcomes in item order; an item that cannot be read fails alone
    (reading prints nothing: its logs are not captured, which costs as much as a small image's read).
    """
    outcomes: list[Outcome] = []
    group: list[Item] = []
    values: list[Any] = []
    failed: list[Outcome | None] = []
    held = 0

    def flush() -> None:
        nonlocal held
        try:
            outcomes.extend(batched(group, values, failed, run))
        finally:
            budget.give(held)
            held = 0
            for kept in (group, values, failed):
                kept.clear()

    try:
        for item in items:
            out = attempt(lambda item=item: size(single(item)))  # type: ignore[misc]
            if out.error is None:
                if not budget.try_take(out.value):
                    if group:
                        flush()
                    budget.take(out.value)
                held += out.value
                out = attempt(lambda item=item: read(single(item)))  # type: ignore[misc]
            group.append(item)
            values.append(out.value if out.error is None else None)
            failed.append(out if out.error is not None else None)
        if group:
            flush()
    finally:
        budget.give(held)
    return outcomes


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
