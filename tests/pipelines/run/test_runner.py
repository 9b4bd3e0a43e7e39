"""Events through pipelines, batches run in this process by the real dispatcher and runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.context import AppContext
from modelyard.pipelines import events, submission
from modelyard.pipelines.models import EventState, StageState
from modelyard.pipelines.run import control
from modelyard.pipelines.schemas import EventCreate
from tests.pipelines.conftest import apply_yaml, drain, event, runs, submit, write_images

CHAIN = """
name: chain
raw: bytes
stages:
  a: {type: python, callable: "tests.pipelines.stages:size", output_type: json}
  b: {type: python, callable: "tests.pipelines.stages:double", inputs: [a], output_type: json}
  c: {type: python, callable: "tests.pipelines.stages:double", inputs: [b], output_type: json}
"""


def test_chain_runs_every_stage_and_stores_each_output(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "chain", *[(f"e{i}", str(p)) for i, p in enumerate(paths)])
    drain(ctx)
    for eid, path in zip(ids, paths, strict=True):
        assert event(ctx, eid).state == EventState.COMPLETE
        r = runs(ctx, eid)
        assert {s: x.state for s, x in r.items()} == dict.fromkeys(["raw", "a", "b", "c"], StageState.DONE)
        size = path.stat().st_size
        assert r["c"].result == {"n": size * 4}
        assert r["c"].output_key == f"pipelines/chain/c/{eid}.json"
        assert ctx.storage.get_bytes(r["c"].output_key) == f'{{"n":{size * 4}}}'.encode()
        assert r["raw"].output_key == str(path.resolve())
        assert all(x.writes == 1 for x in r.values())


DIAMOND = """
name: diamond
stages:
  a: {type: python, callable: "tests.pipelines.stages:size", output_type: json}
  b: {type: python, callable: "tests.pipelines.stages:double", inputs: [a], output_type: json}
  c: {type: python, callable: "tests.pipelines.stages:double", inputs: [a], output_type: json}
  d: {type: python, callable: "tests.pipelines.stages:add", inputs: [b, c], output_type: json}
"""


def test_diamond_joins_both_branches(ctx: AppContext) -> None:
    apply_yaml(ctx, DIAMOND)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "diamond", ("one", str(path)))
    drain(ctx)
    r = runs(ctx, eid)
    assert r["d"].result == {"n": path.stat().st_size * 4}
    assert r["d"].started_at >= max(r["b"].finished_at, r["c"].finished_at)


def test_a_subset_of_stages_pulls_in_its_dependencies_only(ctx: AppContext) -> None:
    apply_yaml(ctx, DIAMOND)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "diamond", ("one", str(path)), stages=["b"])
    drain(ctx)
    assert sorted(runs(ctx, eid)) == ["a", "b", "raw"]
    assert event(ctx, eid).state == EventState.COMPLETE


def test_the_same_event_name_twice_does_not_run_twice(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    first = submission.submit_events(ctx, "chain", [EventCreate(name="x", source=str(path))])
    drain(ctx)
    again = submission.submit_events(
        ctx,
        "chain",
        [EventCreate(name="x", source=str(path)), EventCreate(name="x", source="other")],
    )
    assert first[0].created and not again[0].created and not again[1].created
    assert again[0].id == again[1].id == first[0].id
    assert again[0].state == EventState.COMPLETE
    assert drain(ctx) == 0
    assert all(r.writes == 1 for r in runs(ctx, first[0].id).values())


def test_missing_file_fails_the_event_with_the_reason_and_others_flow(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    good, bad = submit(ctx, "chain", ("good", str(path)), ("bad", "in/nope.png"))
    drain(ctx)
    assert event(ctx, good).state == EventState.COMPLETE
    failed = event(ctx, bad)
    assert failed.state == EventState.FAILED
    assert failed.error_stage == "raw" and "does not exist" in (failed.error or "")
    r = runs(ctx, bad)
    assert r["raw"].attempts == 1  # a missing file is not retried
    assert {r[s].state for s in "abc"} == {StageState.SKIPPED}
    assert failed.finished_at is not None


def test_sources_are_checked_on_submission_and_nothing_is_stored(ctx: AppContext) -> None:
    import pytest

    from modelyard.errors import ValidationFailed

    apply_yaml(ctx, CHAIN)
    with pytest.raises(ValidationFailed) as info:
        submit(
            ctx,
            "chain",
            ("ok", "in/a.png"),
            ("up", "../../etc/passwd"),
            ("ftp", "ftp://x/y"),
            ("k", "artifact://a/../b"),
        )
    assert [e["field"] for e in info.value.errors] == [
        "events[1].source",
        "events[2].source",
        "events[3].source",
    ]
    assert events.list_events(ctx, "chain").total == 0


def test_stage_that_raises_is_retried_then_fails_with_traceback_and_logs(ctx: AppContext) -> None:
    apply_yaml(
        ctx,
        """
name: failing
stages:
  a: {type: python, callable: "tests.pipelines.stages:boom", retry: {max_attempts: 3, backoff_seconds: 0}}
  b: {type: python, callable: "tests.pipelines.stages:size", inputs: [a]}
  c: {type: python, callable: "tests.pipelines.stages:size"}
""",
    )
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "failing", ("e", str(path)))
    drain(ctx)
    r = runs(ctx, eid)
    assert r["a"].state == StageState.FAILED and r["a"].attempts == 3
    assert r["a"].error_type == "RuntimeError" and "boom on e" in (r["a"].error or "")
    assert "Traceback" in (r["a"].traceback or "")
    assert r["b"].state == StageState.SKIPPED
    assert r["c"].state == StageState.DONE  # an independent branch still runs
    ev = event(ctx, eid)
    assert ev.state == EventState.FAILED and ev.error_stage == "a"
    logs = events.read_logs(ctx, eid, "a")
    assert "about to fail" in logs and "RuntimeError: boom on e" in logs


def test_transient_failure_is_retried_and_succeeds(ctx: AppContext, tmp_path: Path) -> None:
    apply_yaml(
        ctx,
        """
name: flaky
stages:
  a: {type: python, callable: "tests.pipelines.stages:flaky", retry: {max_attempts: 2, backoff_seconds: 0}}
""",
    )
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "flaky", ("e", str(path)), params={"marker_dir": str(tmp_path)})
    drain(ctx)
    r = runs(ctx, eid)["a"]
    assert (r.state, r.attempts, r.result) == (StageState.DONE, 2, {"second": True})
    assert r.error is None


def test_a_store_that_refuses_the_batch_writes_is_retried(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_yaml(
        ctx,
        """
name: stored
stages:
  a: {type: python, callable: "tests.pipelines.stages:size", output_type: json,
      retry: {max_attempts: 2, backoff_seconds: 0}}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 2)
    ids = submit(ctx, "stored", *((f"e{i}", str(p)) for i, p in enumerate(paths)))
    real_put_many, calls = ctx.storage.put_many, []

    def refuse_once(items: list[tuple[str, bytes]]) -> object:
        calls.append([key for key, _ in items])
        if len(calls) == 1:
            raise OSError("no space left on device")
        return real_put_many(items)

    monkeypatch.setattr(ctx.storage, "put_many", refuse_once)
    drain(ctx)
    assert len(calls) == 2 and sorted(calls[0]) == sorted(calls[1])  # the whole batch, then again
    for eid in ids:
        r = runs(ctx, eid)["a"]
        assert (r.state, r.attempts, r.error) == (StageState.DONE, 2, None)
        assert ctx.storage.exists(r.output_key)
    assert [o.key for o in ctx.storage.list("pipelines/stored")] == sorted(calls[1])  # nothing half-written


def test_prints_and_log_records_are_kept_per_stage_run(ctx: AppContext) -> None:
    apply_yaml(ctx, 'name: chatty\nstages:\n  a: {type: python, callable: "tests.pipelines.stages:chatty"}\n')
    paths = write_images(ctx.settings.data_dir / "in", 2)
    ids = submit(ctx, "chatty", ("one", str(paths[0])), ("two", str(paths[1])))
    drain(ctx)
    assert (
        events.read_logs(ctx, ids[0], "a") == "hello from one\n[info] modelyard.stage.a: stage logger line\n"
    )
    assert "hello from two" in events.read_logs(ctx, ids[1], "a")


def test_rerun_is_served_from_the_content_hash_cache(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "chain", ("e", str(path)))
    drain(ctx)
    before = runs(ctx, eid)
    control.rerun(ctx, eid)
    drain(ctx)
    after = runs(ctx, eid)
    assert event(ctx, eid).state == EventState.COMPLETE and event(ctx, eid).runs == 2
    assert all(after[s].cached for s in "abc")
    assert all(after[s].writes == 1 for s in "abc")  # nothing written again
    assert after["c"].content_hash == before["c"].content_hash


def test_rerun_of_one_stage_resets_it_and_its_dependents_only(ctx: AppContext) -> None:
    apply_yaml(ctx, DIAMOND)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "diamond", ("e", str(path)))
    drain(ctx)
    control.rerun(ctx, eid, stage="b", force=True)
    r = runs(ctx, eid)
    assert r["b"].state == StageState.READY and r["d"].state == StageState.PENDING
    assert r["a"].state == r["c"].state == StageState.DONE
    drain(ctx)
    r = runs(ctx, eid)
    assert not r["b"].cached and r["b"].writes == 2  # forced: run again
    assert r["d"].cached  # same inputs as before: from the cache
    assert r["a"].writes == r["c"].writes == 1


def test_identical_inputs_in_another_event_are_served_from_the_cache(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    copy = path.with_name("copy.png")
    copy.write_bytes(path.read_bytes())
    first, second = submit(ctx, "chain", ("first", str(path)))[0], None
    drain(ctx)
    [second] = submit(ctx, "chain", ("second", str(copy)))
    drain(ctx)
    r = runs(ctx, second)
    assert all(r[s].cached for s in "abc")
    assert ctx.storage.get_bytes(r["c"].output_key) == ctx.storage.get_bytes(runs(ctx, first)["c"].output_key)
    assert r["c"].output_key.endswith(f"/{second}.json")


def test_cancel_skips_what_has_not_run(ctx: AppContext) -> None:
    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "chain", ("e", str(path)))
    control.cancel(ctx, eid)
    drain(ctx)
    assert event(ctx, eid).state == EventState.CANCELLED
    assert {r.state for r in runs(ctx, eid).values()} == {StageState.SKIPPED}


def test_repeating_a_settled_batch_changes_nothing(ctx: AppContext) -> None:
    from modelyard.pipelines.run.runner import run_batch

    apply_yaml(ctx, CHAIN)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "chain", ("e", str(path)))
    drain(ctx)
    batch = runs(ctx, eid)["a"].batch_id
    assert batch is not None
    assert run_batch(ctx, batch) == {"runs": 0}
    assert runs(ctx, eid)["a"].writes == 1


def test_a_retry_waits_for_its_backoff(ctx: AppContext, tmp_path: Path) -> None:
    apply_yaml(
        ctx,
        """
name: patient
stages:
  a: {type: python, callable: "tests.pipelines.stages:flaky", retry: {max_attempts: 2, backoff_seconds: 30}}
""",
    )
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "patient", ("e", str(path)), params={"marker_dir": str(tmp_path)})
    drain(ctx)
    r = runs(ctx, eid)["a"]
    assert (r.state, r.attempts, r.error_type) == (StageState.READY, 1, "ConnectionError")
    assert (r.ready_at - r.started_at).total_seconds() >= 29
    assert event(ctx, eid).state == EventState.RUNNING
