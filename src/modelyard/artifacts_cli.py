"""``modelyard artifacts``: put input files into the artifact store, list, download and delete them.

A job's ``uri``, a schedule's ``-p uri=...`` and a pipeline event's ``artifact://key`` name such a key.
Exit codes as every client command: 0 ok, 1 the server refused, 3 server unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from modelyard.client import ApiError, Client

app = typer.Typer(help="Files in the artifact store (job inputs, raw data of events).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="MODELYARD_URL", help="Server URL")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="MODELYARD_API_KEY", help="API key")]
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3


def _failed(exc: Exception) -> typer.Exit:
    if isinstance(exc, ApiError):
        err.print(f"[red]error[/red] {exc}")
        return typer.Exit(EXIT_REFUSED)
    err.print(f"[red]cannot reach the server[/red]: {exc}")
    return typer.Exit(EXIT_UNREACHABLE)


@app.command("put")
def put(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Local file to upload")],
    key: Annotated[str, typer.Argument(help="Key to store it under, e.g. batches/flowers.csv")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload FILE to the artifact store as KEY (replacing what was there)."""
    try:
        with Client(url, api_key=api_key) as client:
            stored = client.put_artifact(file, key)
    except (ApiError, httpx.HTTPError) as exc:
        raise _failed(exc) from exc
    console.print(f"stored {stored['key']} ({stored['size']} bytes)")


@app.command("ls")
def ls(
    prefix: Annotated[str, typer.Argument(help="Only keys starting with this")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List stored files under PREFIX."""
    try:
        with Client(url, api_key=api_key) as client:
            items = client.list_artifacts(prefix)
    except (ApiError, httpx.HTTPError) as exc:
        raise _failed(exc) from exc
    if as_json:
        print(json.dumps(items))
        return
    table = Table("key", "bytes")
    for item in items:
        table.add_row(item["key"], str(item["size"]))
    console.print(table)


@app.command("get")
def get(
    key: Annotated[str, typer.Argument(help="Key of the stored file")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: the key's file name)")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Download the stored file KEY."""
    target = output or Path(key.rsplit("/", 1)[-1])
    try:
        with Client(url, api_key=api_key) as client:
            client.download_artifact(key, target)
    except (ApiError, httpx.HTTPError) as exc:
        raise _failed(exc) from exc
    console.print(f"wrote {target} ({target.stat().st_size} bytes)")


@app.command("rm")
def rm(
    key: Annotated[str, typer.Argument(help="Key of the stored file")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete the stored file KEY."""
    try:
        with Client(url, api_key=api_key) as client:
            client.delete_artifact(key)
    except (ApiError, httpx.HTTPError) as exc:
        raise _failed(exc) from exc
    console.print(f"deleted {key}")
