"""``modelyard events …``: one event of a pipeline, its stage runs, their logs and outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelyard.cli.common import ForceOpt, KeyOpt, UrlOpt, call, connect, console, err

app = typer.Typer(
    help="Pipeline events: one run of a pipeline over one raw data location.", no_args_is_help=True
)


@app.command("show")
def events_show(event_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show an event and every stage run."""
    e = call("GET", f"/api/v1/events/{event_id}", url, api_key)
    at = f" at {e['stage']}" if e["stage"] else ""
    console.print(
        f"[bold]{e['name']}[/bold] ({e['pipeline']} v{e['version']}) {e['state']}{at}  {e['source']}"
    )
    if e["error"]:
        console.print(f"[red]{e['error_stage']}: {e['error']['detail']}[/red]")
    table = Table("stage", "state", "attempts", "cached", "ms", "output", "error")
    for s in e["stages"]:
        out = s["output"]
        table.add_row(
            s["stage"],
            s["state"],
            str(s["attempts"]),
            "yes" if s["cached"] else "",
            f"{s['duration_ms']:.1f}" if s["duration_ms"] is not None else "-",
            f"{out['kind']} {out['size']} B" if out else "",
            (s["error"] or {}).get("detail") or "",
        )
    console.print(table)


@app.command("logs")
def events_logs(
    event_id: str,
    stage: Annotated[str, typer.Option("--stage", "-s", help="The stage whose logs to print")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Print what a stage printed and logged for the event, and its traceback if it failed."""
    text = call("GET", f"/api/v1/events/{event_id}/stages/{stage}/logs", url, api_key)
    shown = (text or b"").decode() if isinstance(text, bytes) else str(text or "")
    if not shown.strip():
        err.print(f"stage {stage!r} of event {event_id} logged nothing")
        return
    sys.stdout.write(shown)


@app.command("output")
def events_output(
    event_id: str,
    stage: Annotated[str, typer.Option("--stage", "-s", help="The stage whose output to fetch")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout)")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Fetch a stage's output for the event (JSON, .npy, Parquet, image or bytes)."""
    data = call("GET", f"/api/v1/events/{event_id}/stages/{stage}/output", url, api_key)
    body = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
    if output is None:
        sys.stdout.buffer.write(body)
    else:
        output.write_bytes(body)
        console.print(f"wrote {output} ({len(body)} bytes)")


@app.command("rerun")
def events_rerun(
    event_id: str,
    stage: Annotated[str | None, typer.Option(help="Only this stage and what depends on it")] = None,
    force: Annotated[bool, typer.Option(help="Run it even if the cache has its output")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Run an event again (unchanged inputs come from the content-hash cache unless --force)."""
    e = call("POST", f"/api/v1/events/{event_id}/rerun", url, api_key, json={"stage": stage, "force": force})
    console.print(f"{e['name']} {e['state']} (run {e['runs']})")


@app.command("cancel")
def events_cancel(event_id: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel an event."""
    e = call("POST", f"/api/v1/events/{event_id}/cancel", url, api_key)
    console.print(f"{e['name']} {e['state']}")


@app.command("rm")
def events_rm(event_id: str, force: ForceOpt = False, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete an event with its stage runs and stored outputs (refused while it is pending or running,
    unless --force)."""
    with connect(url, api_key) as client:
        client.delete_event(event_id, force=force)
    console.print(f"deleted event {event_id}")
