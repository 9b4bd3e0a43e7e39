"""``modelyard artifacts``: put input files into the artifact store, list, download and delete them.

A job's ``uri``, a schedule's ``-p uri=...`` and a pipeline event's ``artifact://key`` name such a key.
Exit codes as every client command: 0 ok, 1 the server refused, 3 server unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelyard.cli.common import KeyOpt, UrlOpt, connect, console

app = typer.Typer(help="Files in the artifact store (job inputs, raw data of events).", no_args_is_help=True)


@app.command("put")
def put(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Local file to upload")],
    key: Annotated[str, typer.Argument(help="Key to store it under, e.g. batches/flowers.csv")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload FILE to the artifact store as KEY (replacing what was there)."""
    with connect(url, api_key) as client:
        stored = client.put_artifact(file, key)
    console.print(f"stored {stored['key']} ({stored['size']} bytes)")


@app.command("ls")
def ls(
    prefix: Annotated[str, typer.Argument(help="Only keys starting with this")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List stored files under PREFIX."""
    with connect(url, api_key) as client:
        items = client.list_artifacts(prefix)
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
    with connect(url, api_key) as client:
        client.download_artifact(key, target)
    console.print(f"wrote {target} ({target.stat().st_size} bytes)")


@app.command("rm")
def rm(
    key: Annotated[str, typer.Argument(help="Key of the stored file")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete the stored file KEY."""
    with connect(url, api_key) as client:
        client.delete_artifact(key)
    console.print(f"deleted {key}")
