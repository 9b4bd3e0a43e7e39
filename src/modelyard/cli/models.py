"""``modelyard models …`` and ``modelyard predict``: the registry and online predictions."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from modelyard.cli.common import EXIT_USAGE, KeyOpt, UrlOpt, connect, console, err, kv, transfer_progress

app = typer.Typer(help="Manage registered models.", no_args_is_help=True)


@app.command("push")
def models_push(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX file")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name")],
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value (JSON values ok)")
    ] = None,
    description: Annotated[str, typer.Option(help="Description for a new model")] = "",
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload FILE as the next version of model NAME, with a progress bar."""
    meta = kv(metadata or [])
    size = file.stat().st_size
    with (
        connect(url, api_key) as client,
        transfer_progress() as progress,
    ):
        task = progress.add_task(f"uploading {file.name}", total=size)
        version = client.push_model(
            file,
            name=name,
            metadata=meta,
            description=description,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"pushed [bold]{name}[/bold] version {version['version']} (sha256 {version['sha256'][:12]})"
    )


@app.command("list")
def models_list(
    tag: Annotated[str | None, typer.Option(help="Only models with this tag")] = None,
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List models."""
    with connect(url, api_key) as client:
        items = client.list_models(**({"tag": tag} if tag else {}))
    if output_json:
        console.print_json(data=items)
        return
    table = Table("name", "latest", "versions", "tags", "description")
    for m in items:
        table.add_row(
            m["name"],
            str(m["latest_version"] or "-"),
            str(len(m["versions"])),
            ", ".join(m["tags"]),
            m["description"],
        )
    console.print(table)


@app.command("show")
def models_show(name: str, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Show a model, its metadata and the signature of each version."""
    with connect(url, api_key) as client:
        model = client.get_model(name)
    console.print(f"[bold]{model['name']}[/bold]  {model['description']}")
    console.print_json(data=model["metadata"])
    table = Table("version", "size", "sha256", "inputs", "outputs")

    def fmt(specs: list[dict[str, Any]]) -> str:
        return "; ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs)

    for v in model["versions"]:
        sig = v["signature"]
        table.add_row(
            str(v["version"]), str(v["size"]), v["sha256"][:12], fmt(sig["inputs"]), fmt(sig["outputs"])
        )
    console.print(table)


@app.command("rm")
def models_rm(
    name: str,
    version: Annotated[str | None, typer.Option(help="Delete only this version")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Delete a model (or one version) and its files."""
    with connect(url, api_key) as client:
        client.delete_model(name, version)
    console.print(f"deleted {name}" + (f" version {version}" if version else ""))


def load_input(path: Path) -> dict[str, Any]:
    """A predict body from .json (a body, or a list of rows), .csv (rows, header skipped) or .npy (rows)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {"rows": data}
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if rows and any(not _is_number(c) for c in rows[0]):
            rows = rows[1:]
        return {"rows": [[float(c) for c in r] for r in rows if r]}
    if suffix == ".npy":
        return {"rows": np.load(path, allow_pickle=False).tolist()}
    err.print(f"[red]--input must be .json, .csv or .npy, not {suffix or 'no suffix'}[/red]")
    raise typer.Exit(EXIT_USAGE)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def predict(
    name: str,
    input_file: Annotated[
        Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help=".json, .csv or .npy")
    ],
    version: Annotated[str, typer.Option(help="Version number or latest")] = "latest",
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Predict with model NAME on the rows or inputs in a file; prints JSON."""
    body = load_input(input_file)
    with connect(url, api_key) as client:
        result = client.predict(name, inputs=body.get("inputs"), rows=body.get("rows"), version=version)
    if "outputs" not in result and "id" in result:  # too many rows to answer at once: it became a job
        err.print(
            f"became batch job {result['id']}; follow it with: modelyard jobs watch {result['id']}",
            soft_wrap=True,
        )
    sys.stdout.write(json.dumps(result) + "\n")
