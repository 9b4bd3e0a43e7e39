"""``modelyard runs …``: geo runs listed, shown with their logs, cancelled; and ``report``, which a
command model's run uses to send its label item back (its token and callback URL from its environment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelyard.cli.common import EXIT_USAGE, KeyOpt, UrlOpt, call, connect, console, err

app = typer.Typer(help="Geo runs of command models.", no_args_is_help=True)
API_PATH = "/api/v1/"


def _line(run: dict[str, Any]) -> str:
    text = f"{run['id']}  {run['state']}  {run['model']}  aoi {run['aoi_id']}  scene {run['scene_id']}"
    return text + (f"  [red]{run['error']}[/red]" if run.get("error") else "")


@app.command("list")
def runs_list(
    model: Annotated[str | None, typer.Option(help="Only this model's runs")] = None,
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled")] = None,
    aoi: Annotated[int | None, typer.Option(help="Only this AOI's runs")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List runs, newest first."""
    params = {k: v for k, v in {"model": model, "state": state, "aoi": aoi}.items() if v is not None}
    for run in call("GET", "/api/v1/runs", url, api_key, params=params)["items"]:
        console.print(_line(run))


@app.command("show")
def runs_show(run_id: int, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """One run as JSON."""
    console.print_json(json.dumps(call("GET", f"/api/v1/runs/{run_id}", url, api_key)))


@app.command("logs")
def runs_logs(run_id: int, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """What the run's command wrote (stdout, then stderr)."""
    logs = call("GET", f"/api/v1/runs/{run_id}/logs", url, api_key)
    console.print(logs["stdout"], end="", markup=False, highlight=False)
    err.print(logs["stderr"], end="", markup=False, highlight=False)


@app.command("cancel")
def runs_cancel(run_id: int, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel a queued or running run."""
    console.print(_line(call("POST", f"/api/v1/runs/{run_id}/cancel", url, api_key)))


@app.command("report")
def runs_report(
    run_id: int,
    item: Annotated[Path, typer.Argument(help="The STAC label item (JSON)", exists=True, dir_okay=False)],
    geojson: Annotated[
        Path | None,
        typer.Option(
            help="Its GeoJSON, sent inline (else the label asset's href is fetched)", dir_okay=False
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="MODELYARD_RUN_TOKEN", help="The run's token", show_default=False)
    ] = None,
    callback: Annotated[
        str | None, typer.Option(envvar="MODELYARD_CALLBACK_URL", help="The run's callback URL")
    ] = None,
    url: UrlOpt = None,
) -> None:
    """Report a run's results (from inside the run: its token and callback URL are in its environment)."""
    if not token:
        err.print("[red]error[/red] no run token: set MODELYARD_RUN_TOKEN or pass --token")
        raise typer.Exit(EXIT_USAGE)
    base = callback.split(API_PATH)[0] if callback else url
    path = f"/api/v1/runs/{run_id}/results"
    with connect(base, token) as client:
        if geojson is None:
            found = client.request("POST", path, content=item.read_bytes(), headers=_json())
        else:
            files = {"file": (geojson.name, geojson.read_bytes(), "application/geo+json")}
            found = client.request("POST", path, data={"item": item.read_text()}, files=files)
    console.print(f"prediction {found['id']}: {found['summary']['features']} features")


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}
