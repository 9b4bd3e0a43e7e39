"""``modelyard scenes …``: post STAC imagery to a server (a file or a URL), list scenes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli.aois import request
from modelyard.cli.common import EXIT_USAGE, KeyOpt, UrlOpt, console, err

app = typer.Typer(help="Scenes: STAC items posted, matched to AOIs, starting runs.", no_args_is_help=True)


@app.command("post")
def post(
    source: Annotated[str, typer.Argument(help="A STAC Item or ItemCollection JSON file, or an http(s) URL")],
    explain: Annotated[
        bool, typer.Option("--explain", help="Say why each AOI considered matched or not")
    ] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Post a STAC Item or ItemCollection (a file, or a URL the server fetches); prints each scene's
    matches and the runs queued. Exit 1 with every problem listed when an item is invalid."""
    body: Any
    if source.startswith(("http://", "https://")):
        body = {"url": source}
    else:
        try:
            body = json.loads(Path(source).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            err.print(f"cannot read {source}: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
    posted = request("POST", "/api/v1/scenes", url, api_key, json=body, params={"explain": explain})
    for scene in posted["scenes"]:
        state = "new" if scene["new"] else "known"
        console.print(
            f"scene [bold]{scene['scene_id']}[/bold] {scene['stac_id']} ({state}): "
            f"{len(scene['matches'])} match(es)"
        )
        for match in scene["matches"]:
            queued = "queued" if match["new"] else "already queued"
            console.print(f"  AOI {match['aoi_id']} -> {match['model']}: run {match['run_id']} {queued}")
        for url_ in scene.get("unvalidated_extensions") or []:
            console.print(f"  [yellow]not validated[/yellow] (schema not shipped): {url_}")
        for e in scene.get("explain") or []:
            mark = "[green]match[/green]" if e["matched"] else "[red]no[/red]"
            console.print(f"  {mark} AOI {e['aoi_id']} {e['name']}: " + "; ".join(e["reasons"]))
    console.print(
        f"{posted['received']} item(s), {posted['new_scenes']} new, {posted['runs_queued']} run(s) queued"
    )


@app.command("ls")
def ls(
    collection: Annotated[str | None, typer.Option(help="Only this STAC collection")] = None,
    bbox: Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List scenes, newest first."""
    params = {"collection": collection, "bbox": bbox, "limit": limit}
    found = request(
        "GET", "/api/v1/scenes", url, api_key, params={k: v for k, v in params.items() if v is not None}
    )
    table = Table("id", "collection", "stac id", "datetime", "GSD m", "bands")
    for s in found["items"]:
        table.add_row(
            str(s["id"]),
            s.get("collection") or "-",
            s["stac_id"],
            s.get("datetime") or "-",
            "-" if s.get("gsd") is None else f"{s['gsd']:g}",
            ", ".join(b["name"] or b["common_name"] or "?" for b in s["bands"]),
        )
    console.print(table)
    console.print(f"{len(found['items'])} of {found['total']}")
