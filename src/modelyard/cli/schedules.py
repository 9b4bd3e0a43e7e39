"""``modelyard schedules …``: cron schedules that submit a job type once per slot."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from modelyard.cli.common import KeyOpt, UrlOpt, call, console, kv

app = typer.Typer(help="Cron schedules of job types.", no_args_is_help=True)


@app.command("list")
def schedules_list(url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """List schedules."""
    page = call("GET", "/api/v1/schedules", url, api_key)
    table = Table("name", "cron", "job type", "paused", "next fire", "params")
    for s in page["items"]:
        table.add_row(
            s["name"],
            s["cron"],
            s["job_type"],
            str(s["paused"]),
            str(s["next_fire_at"])[:19],
            json.dumps({k: v for k, v in s["params"].items() if v is not None}),
        )
    console.print(table)


@app.command("create")
def schedules_create(
    name: str,
    cron: Annotated[str, typer.Option(help="Cron expression, e.g. '0 2 * * *'")],
    job_type: Annotated[str, typer.Option(help="A registered job type")] = "batch_predict",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value (JSON values ok)")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron expression")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a schedule that submits JOB_TYPE with the given parameters once per cron slot."""
    body = {
        "name": name,
        "cron": cron,
        "job_type": job_type,
        "params": kv(param or []),
        "timezone": timezone,
    }
    found = call("POST", "/api/v1/schedules", url, api_key, json=body)
    console.print(f"schedule {found['name']} next fires at {found['next_fire_at']}")


@app.command("rm")
def schedules_rm(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Delete a schedule."""
    call("DELETE", f"/api/v1/schedules/{name}", url, api_key)
    console.print(f"deleted schedule {name}")


@app.command("pause")
def schedules_pause(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Pause a schedule."""
    call("POST", f"/api/v1/schedules/{name}/pause", url, api_key)
    console.print(f"paused {name}")


@app.command("resume")
def schedules_resume(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Resume a paused schedule."""
    call("POST", f"/api/v1/schedules/{name}/resume", url, api_key)
    console.print(f"resumed {name}")
