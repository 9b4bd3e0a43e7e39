"""``modelyard pipelines …``: pipelines applied from a spec, events submitted in chunks, and the queue
and stage watchers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress
from rich.table import Table

from modelyard.cli.common import (
    EXIT_USAGE,
    ForceOpt,
    KeyOpt,
    UrlOpt,
    call,
    check_stream,
    connect,
    console,
    err,
    kv,
)

app = typer.Typer(help="Pipelines: DAGs of stages that events flow through.", no_args_is_help=True)


def _read_events(path: Path) -> list[dict[str, Any]]:
    """Events from .jsonl (one object a line), .json (a list) or .csv (columns name, source)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text())
        return list(data["events"] if isinstance(data, dict) else data)
    if suffix == ".csv":
        with path.open(newline="") as f:
            return [{"name": r["name"], "source": r["source"]} for r in csv.DictReader(f)]
    err.print(f"[red]--file must be .jsonl, .json or .csv, not {suffix or 'no suffix'}[/red]")
    raise typer.Exit(EXIT_USAGE)


@app.command("apply")
def pipelines_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Pipeline spec, YAML or JSON")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a pipeline or a new version of it from FILE; every problem of the spec is listed."""
    found = call(
        "POST",
        "/api/v1/pipelines",
        url,
        api_key,
        content=file.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    what = "applied" if found["changed"] else "unchanged:"
    console.print(
        f"{what} [bold]{found['name']}[/bold] version {found['version']} ({len(found['stages'])} stages)"
    )


@app.command("list")
def pipelines_list(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List pipelines."""
    table = Table("name", "version", "stages", "archive after s", "description")
    for p in call("GET", "/api/v1/pipelines", url, api_key)["items"]:
        ttl = p["archive_after_seconds"]
        table.add_row(
            p["name"],
            str(p["version"]),
            ", ".join(s["name"] for s in p["stages"]),
            str(ttl or "-"),
            p["description"],
        )
    console.print(table)


@app.command("show")
def pipelines_show(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a pipeline's stages: type, inputs, data types and limits."""
    p = call("GET", f"/api/v1/pipelines/{name}", url, api_key)
    console.print(
        f"[bold]{p['name']}[/bold] version {p['version']}, raw data: {p['raw_type']}  {p['description']}"
    )
    table = Table("stage", "type", "inputs", "reads", "makes", "concurrency", "batch", "attempts")
    for s in p["stages"]:
        table.add_row(
            s["name"],
            s["type"],
            ", ".join(s["inputs"]),
            s["accepts"],
            s["produces"],
            str(s["concurrency"]),
            str(s["batch_size"]),
            str(s["max_attempts"]),
        )
    console.print(table)


@app.command("submit")
def pipelines_submit(
    pipeline: str,
    name: Annotated[str | None, typer.Option(help="Event name (unique per pipeline)")] = None,
    source: Annotated[str | None, typer.Option(help="Data-dir path, artifact://key or http(s) URL")] = None,
    file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Events: .jsonl, .json, .csv")
    ] = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Only these stages (and their inputs)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values ok)")
    ] = None,
    folder: Annotated[
        str | None, typer.Option(help="A data-dir folder: an event for each file (named by its path)")
    ] = None,
    pattern: Annotated[str, typer.Option(help="With --folder: only files whose name matches")] = "*",
    chunk: Annotated[int, typer.Option(help="Events per request")] = 1000,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit one event (--name, --source), many (--file, in chunks, with a progress bar), or one for
    each file of a data-dir folder (--folder, --pattern; the server lists it, in one request)."""
    if folder is not None:
        body: dict[str, Any] = {"folder": folder, "pattern": pattern, "stages": stage or None}
        if param:
            body["params"] = kv(param)
        got = call("POST", f"/api/v1/pipelines/{pipeline}/events", url, api_key, json=body)
        console.print(f"{got['created']} events submitted, {got['existing']} already existed")
        return
    if file is not None:
        events = _read_events(file)
    elif name and source:
        events = [{"name": name, "source": source}]
    else:
        err.print("[red]give --name and --source, --file, or --folder[/red]")
        raise typer.Exit(EXIT_USAGE)
    extra: dict[str, Any] = {"params": kv(param or [])} if param else {}
    if stage:
        extra["stages"] = stage
    created = existing = 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed}/{task.total}",
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"submitting to {pipeline}", total=len(events))
        for i in range(0, len(events), chunk):
            part = [{**extra, **e} for e in events[i : i + chunk]]
            got = call("POST", f"/api/v1/pipelines/{pipeline}/events", url, api_key, json={"events": part})
            created, existing = created + got["created"], existing + got["existing"]
            progress.advance(task, len(part))
    console.print(f"{created} events submitted, {existing} already existed")


@app.command("rm")
def pipelines_rm(name: str, force: ForceOpt = False, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a pipeline with its events, stage runs and stored outputs (refused while events are
    pending or running, unless --force)."""
    with connect(url, api_key) as client:
        client.delete_pipeline(name, force=force)
    console.print(f"deleted pipeline {name}")


@app.command("events")
def pipelines_events(
    pipeline: str,
    state: Annotated[str | None, typer.Option(help="pending, running, complete, failed or cancelled")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first)")] = 50,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List a pipeline's events with their state and the stage each is at."""
    params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    page = call("GET", f"/api/v1/pipelines/{pipeline}/events", url, api_key, params=params)
    table = Table("id", "name", "state", "at stage", "error")
    for e in page["items"]:
        table.add_row(e["id"], e["name"], e["state"], e["stage"] or "-", e["error"] or "")
    console.print(table)
    console.print(f"{page['total']} events")


def _queue_table(snap: dict[str, Any]) -> Table:
    table = Table(
        "stage",
        "pending",
        "ready",
        "running",
        "done",
        "failed",
        "skipped",
        "oldest wait s",
        "per s",
        title=f"{snap['pipeline']}: " + ", ".join(f"{k} {v}" for k, v in snap["events"].items()),
    )
    for s in snap["stages"]:
        oldest = s["oldest_ready_seconds"]
        table.add_row(
            s["stage"],
            *(str(s[k]) for k in ("pending", "ready", "running", "done", "failed", "skipped")),
            f"{oldest:.1f}" if oldest is not None else "-",
            f"{s['throughput_per_s']:.2f}",
        )
    return table


@app.command("queues")
def pipelines_queues(
    pipeline: str,
    watch: Annotated[bool, typer.Option(help="Keep updating (server-sent events) until Ctrl-C")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The queue watcher: per stage waiting, running, done, failed, oldest wait and throughput."""
    if not watch:
        console.print(_queue_table(call("GET", f"/api/v1/pipelines/{pipeline}/queues", url, api_key)))
        return
    from rich.live import Live

    with (
        connect(url, api_key) as client,
        Live(console=console) as live,
        client.http.stream("GET", f"/api/v1/pipelines/{pipeline}/queues/stream", timeout=None) as resp,
    ):
        check_stream(client, resp)
        for line in resp.iter_lines():
            if line.startswith("data:"):
                live.update(_queue_table(json.loads(line[5:])))


@app.command("errors")
def pipelines_errors(
    pipeline: str,
    stage: Annotated[str | None, typer.Option(help="Only this stage")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The stage watcher: failures per stage grouped by error type, with example events."""
    params = {"stage": stage} if stage else {}
    report = call("GET", f"/api/v1/pipelines/{pipeline}/errors", url, api_key, params=params)
    table = Table("stage", "error", "count", "example", "events")
    for g in report["groups"]:
        table.add_row(
            g["stage"], g["error_type"], str(g["count"]), (g["example"] or "")[:80], ", ".join(g["events"])
        )
    console.print(table)
