"""Stage kinds inside pipelines: built-in inferrers over fetched URLs, models, commands."""

from __future__ import annotations

import itertools
import os
import select
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.context import AppContext
from modelyard.errors import ValidationFailed
from modelyard.pipelines import events, watch
from modelyard.pipelines.models import EventState, StageState
from tests.imageserver import ImageServer
from tests.pipelines import stages
from tests.pipelines.conftest import apply_yaml, drain, event, register_model, runs, submit, write_images

INFERRERS = """
name: looks
raw: image
stages:
  palette: {type: inferrer, inferrer: palette, params: {top_k: 3}}
  aspect: {type: inferrer, inferrer: aspect_ratio}
  hash: {type: inferrer, inferrer: phash}
"""


def test_three_inferrers_share_one_fetch_per_image(ctx: AppContext, image_server: ImageServer) -> None:
    apply_yaml(ctx, INFERRERS)
    ids = submit(ctx, "looks", *[(f"i{i}", f"{image_server.url}/img/{i}.png") for i in range(5)])
    drain(ctx)
    assert all(event(ctx, e).state == EventState.COMPLETE for e in ids)
    assert image_server.hits == {f"/img/{i}.png": 1 for i in range(5)}
    r = runs(ctx, ids[0])
    assert r["aspect"].result == {"width": 64, "height": 48, "aspect_ratio": 1.333333}
    assert len(r["hash"].result["phash"]) == 16
    assert r["palette"].result is None  # 1,000 floats: too big to keep inline; read from the store
    data, media, _ = events.read_output(ctx, ids[0], "palette")
    assert media == "application/json" and len(__import__("orjson").loads(data)["embedding"]) == 1000
    assert events.get_event(ctx, ids[0]).raw.fetches == 1  # type: ignore[union-attr]
    assert ctx.storage.exists(f"pipelines/raw/{ids[0]}")


def test_404_and_undecodable_urls_fail_their_events_with_the_reason(
    ctx: AppContext, image_server: ImageServer
) -> None:
    apply_yaml(ctx, INFERRERS)
    missing, text = submit(
        ctx, "looks", ("missing", f"{image_server.url}/gone.png"), ("text", f"{image_server.url}/text")
    )
    drain(ctx)
    assert "HTTP 404" in (event(ctx, missing).error or "")
    assert event(ctx, text).state == EventState.FAILED
    assert runs(ctx, text)["raw"].error_type == "UndecodableInput"
    assert image_server.hits["/gone.png"] == 1  # a 404 is not retried


def test_private_addresses_are_refused_unless_allowed(ctx: AppContext, image_server: ImageServer) -> None:
    apply_yaml(ctx, INFERRERS)
    ctx.settings.allow_private_urls = False
    with pytest.raises(ValidationFailed, match="MODELYARD_ALLOW_PRIVATE_URLS"):
        submit(ctx, "looks", ("refused", f"{image_server.url}/img/1.png"))
    ctx.settings.allow_private_urls = True  # submitted while allowed, fetched once no longer allowed
    [eid] = submit(ctx, "looks", ("local", f"{image_server.url}/img/1.png"))
    ctx.settings.allow_private_urls = False
    drain(ctx)
    r = runs(ctx, eid)["raw"]
    assert r.state == StageState.FAILED and r.error_type == "UrlRefused"
    assert image_server.hits == {}


def test_undecodable_file_fails_an_image_stage_without_retry(ctx: AppContext) -> None:
    apply_yaml(ctx, INFERRERS.replace("raw: image", "raw: bytes"))
    bad = ctx.settings.data_dir / "in" / "bad.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png")
    [eid] = submit(ctx, "looks", ("bad", str(bad)))
    drain(ctx)
    r = runs(ctx, eid)
    assert r["palette"].state == StageState.FAILED and r["palette"].attempts == 1
    assert r["palette"].error_type == "UndecodableInput"


def test_model_stage_and_features_inferrer_give_l2_normalised_vectors(
    ctx: AppContext, model_dir: Path
) -> None:
    register_model(ctx, model_dir / "image.onnx", "pool")
    apply_yaml(
        ctx,
        """
name: embed
raw: image
stages:
  vec: {type: model, model: pool, preprocess: {resize: 224}, postprocess: {l2_normalise: true}}
  feat: {type: inferrer, inferrer: features, params: {model: pool, resize: [224, 224], mean: 0, std: 1}}
  top: {type: model, model: pool, preprocess: {resize: 224}, postprocess: {softmax: true, top_k: 2, labels: [r, g, b]}}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "embed", *[(p.stem, str(p)) for p in paths])
    drain(ctx)
    for eid in ids:
        assert event(ctx, eid).state == EventState.COMPLETE, [
            (r.stage, r.error) for r in runs(ctx, eid).values()
        ]
        for stage in ("vec", "feat"):
            data, media, name = events.read_output(ctx, eid, stage)
            arr = np.load(__import__("io").BytesIO(data))
            assert media == "application/x-npy" and name.endswith(".npy")
            assert arr.shape == (3,) and arr.dtype == np.float32
            assert np.linalg.norm(arr) == pytest.approx(1.0, abs=1e-5)
        top = runs(ctx, eid)["top"].result
        assert next(t["label"] for t in top) in "rgb" and len(top) == 2
    r = runs(ctx, ids[0])
    assert r["vec"].cache_key is not None


def test_unknown_model_and_module_are_listed_when_applying(ctx: AppContext) -> None:
    from modelyard.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        apply_yaml(
            ctx,
            """
name: broken
raw: image
stages:
  vec: {type: model, model: nope, preprocess: {resize: 8}}
  py: {type: python, callable: "no_such_module_xyz:run"}
""",
        )
    assert [e["field"] for e in info.value.errors] == ["stages.vec.model", "stages.py.callable"]


def test_command_stage_reads_input_writes_output_and_gets_no_secrets(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "postgresql://secret")
    script = (
        "import os, sys, json; data = open(sys.argv[1], 'rb').read(); "
        "print('seen', len(data)); "
        "json.dump({'n': len(data), 'leak': [k for k in os.environ if k.startswith('MODELYARD_')], "
        "'event': os.environ['EVENT_NAME']}, open(sys.argv[2], 'w'))"
    )
    apply_yaml(
        ctx,
        f"""
name: cmd
stages:
  count:
    type: command
    command: [{sys.executable!r}, "-c", {script!r}, "{{input}}", "{{output}}"]
    output_type: json
  fail:
    type: command
    command: [{sys.executable!r}, "-c", "import sys; sys.stderr.write('bad things'); sys.exit(3)"]
    retry: {{max_attempts: 1}}
""",
    )
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "cmd", ("c1", str(path)))
    drain(ctx)
    r = runs(ctx, eid)
    assert r["count"].result == {"n": path.stat().st_size, "leak": [], "event": "c1"}
    assert events.read_logs(ctx, eid, "count").startswith("seen ")
    assert r["fail"].state == StageState.FAILED and "status 3: bad things" in (r["fail"].error or "")


def test_slow_events_of_one_batch_run_side_by_side_up_to_the_stage_concurrency(ctx: AppContext) -> None:
    apply_yaml(
        ctx,
        """
name: slow
stages:
  wide: {type: python, callable: "tests.pipelines.stages:span", params: {seconds: 0.5}, batch_size: 3, concurrency: 2, cache: false}
  narrow: {type: python, callable: "tests.pipelines.stages:span", params: {seconds: 0.05}, batch_size: 3, concurrency: 1, cache: false}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "slow", *[(p.stem, str(p)) for p in paths])
    drain(ctx)
    for stage in ("wide", "narrow"):
        assert len({runs(ctx, e)[stage].batch_id for e in ids}) == 1  # one batch of the three events
    wide = sorted((runs(ctx, e)["wide"].result for e in ids), key=lambda r: r["start"])
    # the first two overlap (each started before the other ended); the third waited for a free slot
    assert wide[1]["start"] < wide[0]["end"] and wide[0]["start"] < wide[1]["end"]
    assert wide[2]["start"] >= min(wide[0]["end"], wide[1]["end"])
    narrow = sorted((runs(ctx, e)["narrow"].result for e in ids), key=lambda r: r["start"])
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(narrow))  # one at a time


def test_slow_commands_of_one_batch_run_side_by_side_up_to_the_stage_concurrency(ctx: AppContext) -> None:
    # wall-clock times: the commands are separate processes
    script = (
        "import json, sys, time; start = time.time(); time.sleep(0.5); "
        "json.dump({'start': start, 'end': time.time()}, open(sys.argv[1], 'w'))"
    )
    apply_yaml(
        ctx,
        f"""
name: slowcmd
stages:
  wide:
    type: command
    command: [{sys.executable!r}, "-c", {script!r}, "{{output}}"]
    output_type: json
    batch_size: 3
    concurrency: 2
    cache: false
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "slowcmd", *[(p.stem, str(p)) for p in paths])
    drain(ctx)
    assert len({runs(ctx, e)["wide"].batch_id for e in ids}) == 1  # one batch of the three events
    wide = sorted((runs(ctx, e)["wide"].result for e in ids), key=lambda r: r["start"])
    assert wide[1]["start"] < wide[0]["end"] and wide[0]["start"] < wide[1]["end"]
    assert wide[2]["start"] >= min(wide[0]["end"], wide[1]["end"])


def test_array_outputs_round_trip_to_downstream_stages(ctx: AppContext) -> None:
    apply_yaml(
        ctx,
        """
name: arrays
stages:
  v: {type: python, callable: "tests.pipelines.stages:vector", output_type: array}
  n: {type: model, model: x, inputs: [v]}
""".replace("  n: {type: model, model: x, inputs: [v]}\n", ""),
    )
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "arrays", ("a", str(path)))
    drain(ctx)
    data, _media, _ = events.read_output(ctx, eid, "v")
    assert np.load(__import__("io").BytesIO(data)).tolist() == [
        0.0,
        1.0 * path.stat().st_size,
        2.0 * path.stat().st_size,
        3.0 * path.stat().st_size,
    ]


@pytest.fixture
def release_stuck_calls() -> Iterator[None]:
    """Stuck calls wait until the test ends; a watchdog frees them sooner if timeouts do not work, so a
    broken timeout fails the test instead of hanging it."""
    stages.RELEASE.clear()
    watchdog = threading.Timer(30, stages.RELEASE.set)
    watchdog.start()
    yield
    stages.RELEASE.set()
    watchdog.cancel()


def test_a_python_call_past_its_timeout_is_abandoned_retried_then_failed(
    ctx: AppContext, release_stuck_calls: None
) -> None:
    apply_yaml(
        ctx,
        """
name: slow
stages:
  wait:
    type: python
    callable: "tests.pipelines.stages:stuck"
    timeout_seconds: 0.2
    retry: {max_attempts: 2, backoff_seconds: 0}
  other: {type: python, callable: "tests.pipelines.stages:size"}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 2)
    [hung] = submit(ctx, "slow", ("hung", str(paths[0])), params={"stuck": True})
    [fine] = submit(ctx, "slow", ("fine", str(paths[1])))
    drain(ctx)  # returns although a call never did
    r = runs(ctx, hung)
    assert (r["wait"].state, r["wait"].attempts, r["wait"].error_type) == (StageState.FAILED, 2, "timeout")
    assert "timeout_seconds of 0.2 s" in (r["wait"].error or "")
    assert r["wait"].duration_ms == pytest.approx(200, abs=1)
    assert r["other"].state == StageState.DONE  # the event's other branch ran
    assert (event(ctx, hung).state, event(ctx, hung).error_stage) == (EventState.FAILED, "wait")
    assert event(ctx, fine).state == EventState.COMPLETE  # events after it in the batch flowed on
    assert runs(ctx, fine)["wait"].result == {"ok": True}
    logs = events.read_logs(ctx, hung, "wait")
    assert logs.startswith("hung waits\n")  # what it printed before it was abandoned
    assert "RELEASE.wait()" in logs  # and where it was
    [group] = watch.error_report(ctx, "slow").groups
    assert (group.stage, group.error_type, group.events) == ("wait", "timeout", ["hung"])


def exited(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended, or ends within ``within`` seconds (waits on a pidfd)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)


def test_a_command_past_its_timeout_is_killed_with_what_it_started(ctx: AppContext, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        f'if [ "$EVENT_NAME" = hung ]; then sleep 60 & echo "$$ $!" >> {pids}; echo started; wait; fi; '
        "echo quick"
    )
    apply_yaml(
        ctx,
        f"""
name: cmd
stages:
  run:
    type: command
    command: [sh, -c, {script!r}]
    timeout_seconds: 0.5
    retry: {{max_attempts: 2, backoff_seconds: 0}}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 2)
    hung, fine = submit(ctx, "cmd", ("hung", str(paths[0])), ("fine", str(paths[1])))
    drain(ctx)
    r = runs(ctx, hung)["run"]
    assert (r.state, r.attempts, r.error_type) == (StageState.FAILED, 2, "timeout")
    assert "timeout_seconds of 0.5 s and was killed" in (r.error or "")
    logs = events.read_logs(ctx, hung, "run")
    assert logs.startswith("started\n") and "StageTimeout" in logs
    started = [int(pid) for line in pids.read_text().splitlines() for pid in line.split()]
    assert len(started) >= 2  # the shell and its sleep, per attempt that got that far
    assert all(exited(pid) for pid in started)  # the shell and the sleep it left running: both killed
    assert event(ctx, fine).state == EventState.COMPLETE
    assert events.read_output(ctx, fine, "run")[0] == b"quick\n"


def test_an_array_inferrer_reads_npy_raw_data(ctx: AppContext) -> None:
    apply_yaml(ctx, "name: stats\nraw: array\nstages:\n  s: {type: inferrer, inferrer: array_stats}\n")
    folder = ctx.settings.data_dir / "in"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.array([[1.0, 2.0], [3.0, np.nan]], dtype=np.float32))
    (folder / "b.npy").write_bytes(b"not an array")
    good, bad = submit(ctx, "stats", ("a", str(folder / "a.npy")), ("b", str(folder / "b.npy")))
    drain(ctx)
    assert runs(ctx, good)["s"].result == {
        "shape": [2, 2],
        "dtype": "float32",
        "size": 4,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
    }
    assert event(ctx, bad).state == EventState.FAILED  # refused as array raw data when fetched
    assert runs(ctx, bad)["raw"].error_type == "UndecodableInput"


def test_a_table_inferrer_reads_csv_raw_data_and_a_python_stage_passes_a_table_on(ctx: AppContext) -> None:
    spec = (
        "name: tables\nraw: table\nstages:\n"
        "  s: {type: inferrer, inferrer: table_stats}\n"
        "  head: {type: python, callable: 'tests.pipelines.stages:first_row', output_type: table}\n"
        "  again: {type: inferrer, inferrer: table_stats, inputs: [head]}\n"
    )
    apply_yaml(ctx, spec)
    folder = ctx.settings.data_dir / "in"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(b"id,score\n1,0.5\n2,\n")
    (folder / "b.csv").write_bytes(b"id,score\n1,2,3\n")
    good, bad = submit(ctx, "tables", ("a", str(folder / "a.csv")), ("b", str(folder / "b.csv")))
    drain(ctx)
    columns = [{"name": "id", "type": "int64", "nulls": 0}, {"name": "score", "type": "double", "nulls": 1}]
    assert runs(ctx, good)["s"].result == {"rows": 2, "columns": columns}
    assert runs(ctx, good)["head"].output_kind == "table"
    assert runs(ctx, good)["again"].result == {"rows": 1, "columns": [{**c, "nulls": 0} for c in columns]}
    assert event(ctx, bad).state == EventState.FAILED  # refused as table raw data when fetched
    assert runs(ctx, bad)["raw"].error_type == "UndecodableInput"
