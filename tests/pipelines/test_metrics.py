"""Pipeline figures at ``/metrics``: stage runs and events by state read from the database at scrape time,
stage run times and raw data fetches counted by the worker that settles them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.pipelines.conftest import drain, write_images

SPEC = """
name: m
stages:
  size: {type: python, callable: "tests.pipelines.stages:size"}
  loud: {type: python, callable: "tests.pipelines.stages:boom", retry: {max_attempts: 1}}
  flaky: {type: python, callable: "tests.pipelines.stages:flaky", retry: {max_attempts: 2, backoff_seconds: 0}}
"""
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Any) -> Samples:
    resp = api.get("/metrics")
    assert resp.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def runs_by_state(samples: Samples, stage: str) -> dict[str, float]:
    return {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "modelyard_pipeline_stage_runs" and dict(labels)["stage"] == stage
    }


def test_stage_runs_and_events_by_state_are_read_at_scrape_time(api: Any, tmp_path: Path) -> None:
    assert api.post(
        "/api/v1/pipelines", content=SPEC, headers={"Content-Type": "application/yaml"}
    ).is_success
    paths = write_images(api.ctx.settings.data_dir / "in", 2)
    body = {
        "events": [
            {"name": "a", "source": str(paths[0])},
            {"name": "b", "source": str(paths[1])},
            {"name": "c", "source": "in/missing.png"},
        ]
    }
    for e in body["events"]:
        e["params"] = {"marker_dir": str(tmp_path)}
    assert api.post("/api/v1/pipelines/m/events", json=body).status_code == 202
    before = scrape(api)
    zero = {"pending": 0, "ready": 0, "running": 0, "done": 0, "failed": 0, "skipped": 0}
    assert runs_by_state(before, "raw") == {**zero, "ready": 3}
    assert runs_by_state(before, "loud") == {**zero, "pending": 3}
    assert value(before, "modelyard_pipeline_events", pipeline="m", state="pending") == 3
    assert value(before, "modelyard_pipeline_events", pipeline="m", state="complete") == 0

    drain(api.ctx)
    after = scrape(api)
    assert runs_by_state(after, "raw") == {**zero, "done": 2, "failed": 1}
    assert runs_by_state(after, "size") == {**zero, "done": 2, "skipped": 1}
    assert runs_by_state(after, "loud") == {**zero, "failed": 2, "skipped": 1}
    assert runs_by_state(after, "flaky") == {**zero, "done": 2, "skipped": 1}
    assert value(after, "modelyard_pipeline_events", pipeline="m", state="failed") == 3
    assert value(after, "modelyard_pipeline_events", pipeline="m", state="pending") == 0


def test_stage_run_times_and_raw_fetches_are_counted_as_runs_settle(api: Any, tmp_path: Path) -> None:
    api.post("/api/v1/pipelines", content=SPEC, headers={"Content-Type": "application/yaml"})
    paths = write_images(api.ctx.settings.data_dir / "in", 2)
    params = {"marker_dir": str(tmp_path)}
    events = [{"name": p.stem, "source": str(p), "params": params} for p in paths]
    events.append({"name": "missing", "source": "in/missing.png", "params": params})
    api.post("/api/v1/pipelines/m/events", json={"events": events})
    drain(api.ctx)

    def count(stage: str, outcome: str) -> float | None:
        return value(
            scrape(api),
            "modelyard_pipeline_stage_run_seconds_count",
            pipeline="m",
            stage=stage,
            outcome=outcome,
        )

    assert (count("raw", "done"), count("raw", "failed")) == (2, 1)
    assert count("size", "done") == 2
    assert count("loud", "failed") == 2
    assert (count("flaky", "retry"), count("flaky", "done")) == (2, 2)  # each failed once, then passed
    samples = scrape(api)
    assert value(samples, "modelyard_pipeline_raw_fetches_total", pipeline="m", result="fetched") == 2
    assert value(samples, "modelyard_pipeline_raw_fetches_total", pipeline="m", result="failed") == 1
    eid = api.get("/api/v1/pipelines/m/events/img0").json()["id"]
    assert api.post(f"/api/v1/events/{eid}/rerun", json={"stage": "size"}).status_code == 202
    drain(api.ctx)
    assert (count("size", "cached"), count("size", "done")) == (1, 2)  # served from the cache this time
