"""Stage kinds as plug-ins: a kind registered from a module outside ``pipelines/`` is parsed, validated
and run like a built-in one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.context import AppContext
from modelyard.errors import ValidationFailed
from modelyard.pipelines.models import EventState
from modelyard.pipelines.spec.kinds import register_stage_kind, stage_kinds, unregister_stage_kind
from modelyard.pipelines.spec.parse import parse_spec
from tests.pipelines.conftest import apply_yaml, drain, event, runs, submit, write_images
from tests.pipelines.spec.kinds import REPEAT, RepeatKind

ROOT = Path(__file__).parents[3]  # the checkout, so ``tests`` imports in a child process


@pytest.fixture
def repeat() -> Iterator[None]:
    register_stage_kind(REPEAT)
    yield
    unregister_stage_kind(REPEAT.name)


def problems(document: object) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as info:
        parse_spec(document)
    return {e["field"]: e["detail"] for e in info.value.errors}


def test_a_registered_kind_runs_in_a_pipeline(ctx: AppContext, repeat: None) -> None:
    applied = apply_yaml(ctx, "name: rep\nstages:\n  r: {type: repeat, times: 3}\n")
    assert [(s.type, s.accepts, s.produces) for s in applied.stages] == [("repeat", "bytes", "json")]
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "rep", ("a", str(path)))
    drain(ctx)
    assert event(ctx, eid).state == EventState.COMPLETE
    assert runs(ctx, eid)["r"].result == {"n": 3 * path.stat().st_size}


def test_a_registered_kinds_fields_are_validated_with_their_paths(repeat: None) -> None:
    found = problems(
        {
            "name": "rep",
            "raw": "json",
            "stages": {"r": {"type": "repeat", "times": 0, "colour": "red"}},
        }
    )
    assert found["stages.r.times"] == "must be an integer 1..10"
    assert found["stages.r.colour"].startswith("unknown field for a repeat stage (known: ")
    assert "times" in found["stages.r.colour"]
    assert found["stages.r.inputs[0]"] == "stage r reads bytes but raw produces json"


def test_what_a_registered_kind_uses_is_checked_when_applying(ctx: AppContext, repeat: None) -> None:
    with pytest.raises(ValidationFailed) as info:
        apply_yaml(ctx, "name: rep\nstages:\n  r: {type: repeat, times: 1, model: ghost}\n")
    assert [e["field"] for e in info.value.errors] == ["stages.r.model"]
    assert "ghost" in info.value.errors[0]["detail"]


def test_an_unknown_type_names_every_registered_kind(repeat: None) -> None:
    found = problems({"name": "p", "stages": {"a": {"type": "teleport"}}})
    message = found["stages.a.type"]
    prefix = "unknown stage type 'teleport' (one of "
    assert message.startswith(prefix) and message.endswith(")")
    named = message[len(prefix) : -1].split(", ")
    assert sorted(named) == sorted(stage_kinds()) and "repeat" in named and "command" in named


def test_an_unregistered_kind_is_an_unknown_type() -> None:
    assert "repeat" not in stage_kinds()
    assert "stages.r.type" in problems({"name": "p", "stages": {"r": {"type": "repeat", "times": 1}}})


def test_a_second_kind_under_a_taken_name_is_refused(repeat: None) -> None:
    register_stage_kind(REPEAT)  # the same object again is fine
    with pytest.raises(ValueError, match="'repeat' is already registered"):
        register_stage_kind(RepeatKind())


def test_importing_pipelines_registers_no_kind() -> None:
    code = (
        "import modelyard.pipelines.workflows, modelyard.pipelines.api\n"
        "from modelyard.pipelines.spec import kinds\n"
        "print(sorted(kinds._KINDS), kinds._loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False"


def test_a_kind_module_listed_as_an_entry_point_is_loaded(tmp_path: Path) -> None:
    """An installed package lists its kind module in the ``modelyard.stage_kinds`` entry-point group."""
    (tmp_path / "acme_kinds.py").write_text(
        "from modelyard.pipelines.spec.kinds import register_stage_kind\n"
        "from tests.pipelines.spec.kinds import RepeatKind\n"
        "register_stage_kind(RepeatKind())\n"
    )
    info = tmp_path / "acme_kinds-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-kinds\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[modelyard.stage_kinds]\nrepeat = acme_kinds\n")
    code = "from modelyard.pipelines.spec.kinds import stage_kinds\nprint(list(stage_kinds()))\n"
    path = os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == (
        "['inferrer', 'model', 'python', 'command', 'tissue_preprocess', 'tissue_segment', "
        "'tissue_cells', 'tissue_quality', 'tissue_overlay', 'tissue_heatmap', 'tissue_type', "
        "'tissue_stats', 'repeat']"
    )
