"""Footprints: GeoJSON (Multi)Polygons in EPSG:4326 checked, repaired where that is unambiguous, and split
at the antimeridian.

Repaired without asking: a ring left open (closed), repeated consecutive points (dropped), rings wound
the wrong way (exterior counter-clockwise, holes clockwise, as RFC 7946 says). Refused, naming the
problem: coordinates out of range, a ring of fewer than three distinct points, and anything GEOS finds
invalid after that (a self-intersection, a hole outside its shell...), whose repair would be a guess.

A ring that jumps more than 180° in longitude between two points is taken to cross the antimeridian: it
is unwrapped (made continuous past ±180), checked, and cut at 180° into a MultiPolygon whose parts lie
in [-180, 180], so bounding boxes never wrap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from modelyard.geo.stac.validate import StacProblem, json_path

Position = tuple[float, float]
WORLD = box(-180, -90, 180, 90)
EAST = box(180, -90, 540, 90)
WEST = box(-540, -90, -180, 90)
_WHERE = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>[-\d.eE+]+) (?P<y>[-\d.eE+]+)\]")


class ShapeError(Exception):
    """A footprint that cannot be accepted; ``problems`` says where and why."""

    def __init__(self, problems: list[StacProblem]):
        super().__init__("; ".join(f"{p.path}: {p.detail}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Footprint:
    """A normalised footprint: the shape (parts within [-180, 180]), its GeoJSON and its bbox."""

    shape: BaseGeometry
    geojson: dict[str, Any]
    bbox: tuple[float, float, float, float]


def _position(value: Any, path: list[Any]) -> Position:
    ok = isinstance(value, list | tuple) and len(value) in (2, 3)
    if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ShapeError([StacProblem(json_path(path), "position", "a position is [longitude, latitude]")])
    lon, lat = float(value[0]), float(value[1])
    if not -180 <= lon <= 180:
        raise ShapeError(
            [StacProblem(json_path(path), "longitude", f"longitude {lon:g} outside [-180, 180]")]
        )
    if not -90 <= lat <= 90:
        raise ShapeError([StacProblem(json_path(path), "latitude", f"latitude {lat:g} outside [-90, 90]")])
    return lon, lat


def _ring(value: Any, path: list[Any]) -> list[Position]:
    """A ring's positions: closed, without repeats, unwrapped across the antimeridian."""
    if not isinstance(value, list):
        raise ShapeError([StacProblem(json_path(path), "ring", "a linear ring is a list of positions")])
    points: list[Position] = []
    for index, raw in enumerate(value):
        point = _position(raw, [*path, index])
        if not points or point != points[-1]:
            points.append(point)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    if len(points) < 3:
        detail = f"a linear ring needs at least 3 distinct positions, this one has {len(points)}"
        raise ShapeError([StacProblem(json_path(path), "ring", detail)])
    unwrapped = [points[0]]
    for lon, lat in points[1:]:
        previous = unwrapped[-1][0]
        while lon - previous > 180:
            lon -= 360
        while previous - lon > 180:
            lon += 360
        unwrapped.append((lon, lat))
    return [*unwrapped, unwrapped[0]]


def _polygon(value: Any, path: list[Any]) -> Polygon:
    if not isinstance(value, list) or not value:
        raise ShapeError([StacProblem(json_path(path), "polygon", "a polygon is a non-empty list of rings")])
    rings = [_ring(r, [*path, i]) for i, r in enumerate(value)]
    shell = rings[0]
    # a ring unwrapped to the west of -180 is moved a turn east, so every part is cut at +180 only
    if min(lon for lon, _ in shell) < -180:
        rings = [[(lon + 360, lat) for lon, lat in r] for r in rings]
    return orient(Polygon(rings[0], rings[1:]), sign=1.0)


def _invalid(shape: BaseGeometry, path: list[Any]) -> StacProblem:
    reason = explain_validity(shape)
    found = _WHERE.match(reason)
    if found is None:
        return StacProblem(json_path(path), "valid", f"invalid geometry: {reason}")
    lon, lat = float(found["x"]), float(found["y"])
    lon = (lon + 180) % 360 - 180 if not -180 <= lon <= 180 else lon
    what = found["what"].strip().lower()
    return StacProblem(json_path(path), what.replace(" ", "-"), f"{what} at {lon:.6g},{lat:.6g}")


def footprint(geometry: Any, path: list[Any] | None = None) -> Footprint:
    """``geometry`` (a GeoJSON Polygon or MultiPolygon) checked, repaired and split; ``ShapeError`` says
    what cannot be accepted, each problem at its JSON path under ``path``."""
    where = path or []
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if kind not in ("Polygon", "MultiPolygon"):
        detail = f"a footprint is a GeoJSON Polygon or MultiPolygon, not {kind!r}"
        raise ShapeError([StacProblem(json_path([*where, "type"]), "type", detail)])
    at = [*where, "coordinates"]
    if kind == "Polygon":
        parts = [_polygon(coordinates, at)]
    elif isinstance(coordinates, list) and coordinates:
        parts = [_polygon(p, [*at, i]) for i, p in enumerate(coordinates)]
    else:
        raise ShapeError([StacProblem(json_path(at), "polygon", "a MultiPolygon lists at least one polygon")])
    problems = [
        _invalid(p, at if kind == "Polygon" else [*at, i]) for i, p in enumerate(parts) if not p.is_valid
    ]
    if problems:
        raise ShapeError(problems)
    shape = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    if not shape.is_valid:
        raise ShapeError([_invalid(shape, at)])
    return _split(shape)


def _split(shape: BaseGeometry) -> Footprint:
    """``shape`` cut at ±180 with the outer pieces moved a turn back, as a normalised footprint."""
    pieces = [shape.intersection(WORLD)]
    if shape.bounds[2] > 180:
        pieces.append(shapely.affinity.translate(shape.intersection(EAST), xoff=-360))
    if shape.bounds[0] < -180:
        pieces.append(shapely.affinity.translate(shape.intersection(WEST), xoff=360))
    polygons: list[Polygon] = []
    for piece in pieces:
        polygons += [p for p in getattr(piece, "geoms", [piece]) if isinstance(p, Polygon) and not p.is_empty]
    polygons = [orient(p, sign=1.0) for p in polygons]
    result: BaseGeometry = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
    minx, miny, maxx, maxy = result.bounds
    return Footprint(result, _geojson(result), (minx, miny, maxx, maxy))


def _geojson(shape: BaseGeometry) -> dict[str, Any]:
    """GeoJSON of ``shape`` with lists (not tuples), as stored."""
    raw = mapping(shape)

    def lists(value: Any) -> Any:
        return [lists(v) for v in value] if isinstance(value, list | tuple) else value

    return {"type": raw["type"], "coordinates": lists(raw["coordinates"])}


def from_geojson(geometry: dict[str, Any]) -> BaseGeometry:
    """A stored (normalised) footprint as a shape."""
    return shapely.geometry.shape(geometry)
