"""``modelyard aois …``: areas of interest on a server (create, ls, show, rm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.common import EXIT_USAGE, KeyOpt, UrlOpt, call, console, err

app = typer.Typer(help="Areas of interest: where suitable imagery starts a model.", no_args_is_help=True)


IMAGERY_TIMEOUT = 120.0  # seconds: a scene post may make the server fetch and check imagery


def request(method: str, path: str, url: str | None, api_key: str | None, **kwargs: Any) -> Any:
    """``common.call`` with the longer timeout of geo requests."""
    return call(method, path, url, api_key, timeout=IMAGERY_TIMEOUT, **kwargs)


def _geometry(text: str) -> dict[str, Any]:
    """GeoJSON from a file or inline text: a geometry, or a Feature's geometry."""
    path = Path(text)
    try:
        value = json.loads(path.read_text() if path.is_file() else text)
    except (OSError, json.JSONDecodeError) as exc:
        err.print(f"--geometry is neither a GeoJSON file nor GeoJSON text: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict):
        err.print("--geometry must be a GeoJSON object")
        raise typer.Exit(EXIT_USAGE)
    return value


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="AOI name")],
    geometry: Annotated[str, typer.Option(help="GeoJSON Polygon/MultiPolygon: a file or inline text")],
    model: Annotated[str, typer.Option(help="Registered model that suitable imagery feeds")],
    resolution: Annotated[float, typer.Option("--resolution", help="Largest acceptable GSD, metres")],
    wavelength: Annotated[list[float] | None, typer.Option(help="µm a band must cover (repeat)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag (repeat)")] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it inactive")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an AOI; prints its id and normalised bbox."""
    body = {
        "name": name,
        "geometry": _geometry(geometry),
        "model": model,
        "target_resolution": resolution,
        "wavelengths": wavelength or [],
        "tags": tag or [],
        "active": not inactive,
    }
    made = request("POST", "/api/v1/aois", url, api_key, json=body)
    console.print(f"created AOI [bold]{made['id']}[/bold] {made['name']} bbox {made['bbox']}")


@app.command("ls")
def ls(
    model: Annotated[str | None, typer.Option(help="Only AOIs feeding this model")] = None,
    tag: Annotated[str | None, typer.Option(help="Only AOIs with this tag")] = None,
    bbox: Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Only (in)active AOIs")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List AOIs."""
    params = {"model": model, "tag": tag, "bbox": bbox, "active": active, "limit": limit}
    found = request(
        "GET", "/api/v1/aois", url, api_key, params={k: v for k, v in params.items() if v is not None}
    )
    table = Table("id", "name", "model", "GSD <= m", "wavelengths µm", "tags", "active", "bbox")
    for a in found["items"]:
        table.add_row(
            str(a["id"]),
            a["name"],
            a["model"],
            f"{a['target_resolution']:g}",
            ", ".join(f"{w:g}" for w in a["wavelengths"]) or "-",
            ", ".join(a["tags"]) or "-",
            "yes" if a["active"] else "no",
            ", ".join(f"{v:.4g}" for v in a["bbox"]),
        )
    console.print(table)
    console.print(f"{len(found['items'])} of {found['total']}")


@app.command("show")
def show(
    aoi_id: Annotated[int, typer.Argument(help="AOI id")], url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Print an AOI as JSON."""
    console.print_json(json.dumps(request("GET", f"/api/v1/aois/{aoi_id}", url, api_key)))


@app.command("rm")
def rm(
    aoi_id: Annotated[int, typer.Argument(help="AOI id")], url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """Delete an AOI (refused while runs refer to it: deactivate it instead)."""
    request("DELETE", f"/api/v1/aois/{aoi_id}", url, api_key)
    console.print(f"deleted AOI {aoi_id}")
