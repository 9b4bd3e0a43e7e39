"""``modelyard pipelines`` and ``modelyard events`` against a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.app import create_app
from modelyard.cli import app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.pipelines.conftest import drain, write_images

SPEC = """
name: looks
raw: image
stages:
  aspect: {type: inferrer, inferrer: aspect_ratio}
  loud: {type: python, callable: "tests.pipelines.stages:boom", retry: {max_attempts: 1}}
"""


@pytest.fixture
def server(pipeline_settings: Settings) -> Iterator[Any]:
    application = create_app(pipeline_settings)
    with LiveServer(application) as live:
        live.ctx = application.state.ctx  # type: ignore[attr-defined]
        yield live


def cli(server: Any, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--url", server.url, "--api-key", ADMIN_KEY])
    return result


def test_apply_submit_and_inspect_from_the_command_line(server: Any, tmp_path: Path) -> None:
    spec = tmp_path / "looks.yaml"
    spec.write_text(SPEC)
    applied = cli(server, "pipelines", "apply", str(spec))
    assert applied.exit_code == 0 and "applied looks version 1" in applied.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nstages:\n  a: {type: teleport}\n  b: {type: inferrer, inferrer: phash, inputs: [z]}\n"
    )
    refused = cli(server, "pipelines", "apply", str(bad))
    assert refused.exit_code == 1
    assert "stages.a.type: unknown stage type 'teleport'" in refused.output
    assert "stages.b.inputs[0]" in refused.output
    paths = write_images(server.ctx.settings.data_dir / "in", 3)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"name": p.stem, "source": str(p)}) + "\n" for p in paths))
    submitted = cli(server, "pipelines", "submit", "looks", "--file", str(events), "--chunk", "2")
    assert submitted.exit_code == 0 and "3 events submitted, 0 already existed" in submitted.output
    drain(server.ctx)
    listed = cli(server, "pipelines", "events", "looks", "--state", "failed")
    assert "3 events" in listed.output
    from modelyard.pipelines import events

    eid = events.list_events(server.ctx, "looks").items[0].id
    shown = cli(server, "events", "show", eid)
    assert shown.exit_code == 0 and "loud: boom on" in shown.output
    logs = cli(server, "events", "logs", eid, "--stage", "loud")
    assert "about to fail" in logs.output and "RuntimeError" in logs.output
    quiet = cli(server, "events", "logs", eid, "--stage", "aspect")
    assert quiet.exit_code == 0 and "stage 'aspect' of event" in quiet.output
    assert "logged nothing" in quiet.output
    output = cli(server, "events", "output", eid, "--stage", "aspect")
    assert json.loads(output.output)["aspect_ratio"] == pytest.approx(32 / 24, abs=1e-5)
    queues = cli(server, "pipelines", "queues", "looks")
    assert queues.exit_code == 0 and "aspect" in queues.output
    errors = cli(server, "pipelines", "errors", "looks")
    assert "RuntimeError" in errors.output and "3" in errors.output
    assert cli(server, "events", "rerun", eid, "--stage", "aspect").exit_code == 0


def test_rm_deletes_events_and_pipelines_and_refuses_live_ones_without_force(
    server: Any, tmp_path: Path
) -> None:
    from modelyard.pipelines import events

    spec = tmp_path / "looks.yaml"
    spec.write_text(SPEC)
    assert cli(server, "pipelines", "apply", str(spec)).exit_code == 0
    paths = write_images(server.ctx.settings.data_dir / "in", 2)
    for p in paths:
        cli(server, "pipelines", "submit", "looks", "--name", p.stem, "--source", str(p))
    first, second = (e.id for e in events.list_events(server.ctx, "looks").items)
    refused = cli(server, "events", "rm", first)
    assert refused.exit_code == 1 and "it is pending or running" in " ".join(refused.output.split())
    assert cli(server, "events", "rm", first, "--force").exit_code == 0
    assert cli(server, "events", "show", first).exit_code == 1  # gone: 404
    busy = cli(server, "pipelines", "rm", "looks")
    assert busy.exit_code == 1 and "1 event is pending or running" in " ".join(busy.output.split())
    assert [e.id for e in events.list_events(server.ctx, "looks").items] == [second]  # nothing lost
    gone = cli(server, "pipelines", "rm", "looks", "--force")
    assert gone.exit_code == 0 and "deleted pipeline looks" in gone.output
    missing = cli(server, "pipelines", "show", "looks")
    assert missing.exit_code == 1 and "pipeline-not-found" in missing.output


def test_a_folder_is_submitted_from_the_command_line(server: Any) -> None:
    spec = server.ctx.settings.data_dir / "looks.yaml"
    spec.write_text(SPEC)
    assert cli(server, "pipelines", "apply", str(spec)).exit_code == 0
    write_images(server.ctx.settings.data_dir / "in", 3)
    by_folder = cli(server, "pipelines", "submit", "looks", "--folder", "in", "--pattern", "img[01].png")
    assert by_folder.exit_code == 0 and "2 events submitted, 0 already existed" in by_folder.output
    again = cli(server, "pipelines", "submit", "looks", "--folder", "in", "--stage", "aspect")
    assert again.exit_code == 0 and "1 events submitted, 2 already existed" in again.output
    nowhere = cli(server, "pipelines", "submit", "looks", "--folder", "nowhere")
    assert nowhere.exit_code == 1 and "not a folder in the data dir" in nowhere.output
    from modelyard.pipelines import events

    assert sorted(e.name for e in events.list_events(server.ctx, "looks").items) == [
        "in/img0.png",
        "in/img1.png",
        "in/img2.png",
    ]
