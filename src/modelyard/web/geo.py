"""Geo pages: AOIs and scenes, each listed beside an SVG map of AOI outlines and scene footprints."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from modelyard.web.render import SignedIn, api, page

router = APIRouter()
WIDTH, HEIGHT = 640, 320


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    """The rings of a (Multi)Polygon, a geometry collection's polygons; nothing for points and lines."""
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        return [ring for part in geometry.get("geometries", []) for ring in _rings(part)]
    if kind == "Polygon":
        return list(geometry["coordinates"])
    if kind == "MultiPolygon":
        return [ring for polygon in geometry["coordinates"] for ring in polygon]
    return []


def outline_map(shapes: Sequence[tuple[dict[str, Any], str, str]], name: str = "map") -> str:
    """An equirectangular SVG of (GeoJSON geometry, CSS class, label) outlines, framed on their bboxes;
    ``name`` starts its accessible name."""
    rings = [(ring, cls, label) for geometry, cls, label in shapes for ring in _rings(geometry)]
    if not rings:
        empty = f"<title>{escape(name)}: nothing yet</title>"
        return f'<svg class="geo-map" width="{WIDTH}" height="{HEIGHT}" role="img">{empty}</svg>'
    xs = [p[0] for ring, _, _ in rings for p in ring]
    ys = [p[1] for ring, _, _ in rings for p in ring]
    pad = 0.05 * max(max(xs) - min(xs), max(ys) - min(ys), 0.01)
    x0, x1, y0, y1 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    scale = min(WIDTH / (x1 - x0), HEIGHT / (y1 - y0))
    paths = []
    for ring, cls, label in rings:
        points = " ".join(f"{(x - x0) * scale:.1f},{(y1 - y) * scale:.1f}" for x, y, *_ in ring)
        paths.append(
            f'<polygon class="{escape(cls)}" points="{points}"><title>{escape(label)}</title></polygon>'
        )
    return (
        f'<svg class="geo-map" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
        f"<title>{escape(name)}: lon {x0:.4g} to {x1:.4g}, lat {y0:.4g} to {y1:.4g}</title>"
        "<style>.aoi{fill:rgba(40,120,200,.15);stroke:#2878c8}.aoi-off{fill:none;stroke:#999;"
        "stroke-dasharray:3}.scene{fill:rgba(220,120,20,.12);stroke:#dc7814}"
        ".label{fill:rgba(164,14,38,.35);stroke:#a40e26}</style>" + "".join(paths) + "</svg>"
    )


def bbox_polygon(bbox: Sequence[float]) -> dict[str, Any]:
    """A [west, south, east, north] box as a GeoJSON polygon."""
    x0, y0, x1, y1 = bbox[:4]
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


async def _geo_page(request: Request, viewer: Any, template: str) -> Response:
    async with api(request, viewer) as my:
        aois = await my.get("/api/v1/aois", limit=1000)
        scenes = await my.get("/api/v1/scenes", limit=200)
    shapes = [
        (a["geometry"], "aoi" if a["active"] else "aoi-off", f"AOI {a['id']} {a['name']}")
        for a in aois["items"]
    ]
    for s in scenes["items"]:
        shapes.append((bbox_polygon(s["bbox"]), "scene", f"scene {s['id']} {s['stac_id']}"))
    return page(
        request,
        template,
        viewer,
        aois=aois,
        scenes=scenes,
        map=outline_map(shapes, "AOIs and the latest scenes"),
    )


@router.get("/aois", response_class=HTMLResponse)
async def aois_page(request: Request, viewer: SignedIn) -> Response:
    """Areas of interest, and a map of their outlines beside the latest scenes' footprints."""
    return await _geo_page(request, viewer, "aois.html")


@router.get("/scenes", response_class=HTMLResponse)
async def scenes_page(request: Request, viewer: SignedIn) -> Response:
    """The latest scenes received, and the same map."""
    return await _geo_page(request, viewer, "scenes.html")
