"""Label results, pure: the checks a reported STAC label item and its GeoJSON must pass, and what the
GeoJSON holds (features and geodesic area, per class). No database, no storage."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from shapely.geometry import shape
from shapely.validation import explain_validity

from modelyard.geo.stac.validate import StacProblem, check_item, json_path

LABEL_FIELDS = (
    "label:properties",
    "label:description",
    "label:type",
    "label:classes",
    "label:tasks",
    "label:methods",
)
GEOJSON_TYPES = ("application/geo+json", "application/json")
EARTH_RADIUS_M = 6378137.0  # WGS84 equatorial radius, as GeoJSON area tools use
MAX_FEATURE_PROBLEMS = 20
UNLABELLED = "(none)"


class LabelProblems(Exception):
    """What is wrong with a reported label item or its GeoJSON (each at a JSON path)."""

    def __init__(self, problems: Sequence[StacProblem]):
        super().__init__("; ".join(f"{p.path}: {p.detail}" for p in problems))
        self.problems = list(problems)


def check_label_item(item: Any) -> tuple[str, dict[str, Any]]:
    """``item`` checked as a STAC item with the label extension (the shipped schemas, plus each label
    field present); returns the key and the asset that holds the GeoJSON."""
    problems = check_item(item).problems if isinstance(item, dict) else []
    if not isinstance(item, dict):
        raise LabelProblems([StacProblem("$", "type", "a STAC item is a JSON object")])
    properties: dict[str, Any] = item["properties"] if isinstance(item.get("properties"), dict) else {}
    problems += [
        StacProblem(f"$.properties['{name}']", "required", f"a label item needs {name}")
        for name in LABEL_FIELDS
        if name not in properties
    ]
    if not any("label" in str(url) for url in item.get("stac_extensions") or []):
        problems.append(StacProblem("$.stac_extensions", "contains", "the label extension is not declared"))
    assets: dict[str, Any] = item["assets"] if isinstance(item.get("assets"), dict) else {}
    found = [
        (key, asset)
        for key, asset in assets.items()
        if isinstance(asset, dict)
        and ("labels" in (asset.get("roles") or []) or str(asset.get("type", "")).startswith(GEOJSON_TYPES))
    ]
    if not found:
        problems.append(
            StacProblem("$.assets", "contains", "no GeoJSON asset (role 'labels' or type geo+json)")
        )
    if problems:
        raise LabelProblems(problems)
    return found[0]


def class_property(item: dict[str, Any]) -> str | None:
    """The feature property whose values are the classes (the first of ``label:classes``, else of
    ``label:properties``); None for a label item without one."""
    properties = item["properties"]
    for entry in properties.get("label:classes") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            return str(entry["name"])
    names = properties.get("label:properties")
    return str(names[0]) if isinstance(names, list) and names else None


def parse_geojson(data: bytes) -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection (or one Feature), each geometry valid."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LabelProblems([StacProblem("asset", "json", f"the GeoJSON asset is not JSON: {exc}")]) from None
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = {"type": "FeatureCollection", "features": [doc]}
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        raise LabelProblems([StacProblem("asset", "type", "the asset is not a GeoJSON FeatureCollection")])
    problems: list[StacProblem] = []
    for index, feature in enumerate(doc["features"]):
        where = json_path(["features", index], "asset")
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(StacProblem(where, "type", "not a GeoJSON Feature"))
        elif feature.get("geometry") is not None:
            problems += _geometry_problems(feature["geometry"], f"{where}.geometry")
        if len(problems) >= MAX_FEATURE_PROBLEMS:
            break
    if problems:
        raise LabelProblems(problems)
    features: list[dict[str, Any]] = doc["features"]
    return features


def _geometry_problems(geometry: Any, where: str) -> list[StacProblem]:
    try:
        geom = shape(geometry)
    except Exception as exc:  # shapely says little and raises many types
        return [StacProblem(where, "geometry", f"not a GeoJSON geometry: {exc}")]
    if geom.is_empty:
        return [StacProblem(where, "geometry", "empty geometry")]
    if not geom.is_valid:
        return [StacProblem(where, "valid", f"invalid geometry: {explain_validity(geom)}")]
    return []


def _ring_area(ring: Sequence[Sequence[float]]) -> float:
    """Area of a ring on the sphere (m²), by the formula of Chamberlain and Duquette (JPL, 2007)."""
    count = len(ring)
    if count < 3:
        return 0.0
    total = 0.0
    for i in range(count):
        p1, p2, p3 = ring[i], ring[(i + 1) % count], ring[(i + 2) % count]
        total += (math.radians(p3[0]) - math.radians(p1[0])) * math.sin(math.radians(p2[1]))
    return abs(total * EARTH_RADIUS_M * EARTH_RADIUS_M / 2)


def area_m2(geometry: dict[str, Any] | None) -> float:
    """Geodesic area of a GeoJSON geometry in m² (points and lines have none)."""
    if not geometry:
        return 0.0
    kind: Any = geometry.get("type")
    coords: Any = geometry.get("coordinates")
    if kind == "Polygon":
        return max(0.0, _ring_area(coords[0]) - sum(_ring_area(r) for r in coords[1:]))
    if kind == "MultiPolygon":
        return sum(area_m2({"type": "Polygon", "coordinates": p}) for p in coords)
    if kind == "GeometryCollection":
        return sum(area_m2(g) for g in geometry.get("geometries", []))
    return 0.0


@dataclass(frozen=True, slots=True)
class Counted:
    """Features and area, in total and per class."""

    features: int
    area_m2: float
    classes: dict[str, dict[str, float]]

    def public(self) -> dict[str, Any]:
        """The JSON form (stored with the prediction)."""
        return {"features": self.features, "area_m2": self.area_m2, "classes": self.classes}


def summarise(features: list[dict[str, Any]], prop: str | None) -> Counted:
    """Count ``features`` and their area, per value of property ``prop``."""
    classes: dict[str, dict[str, float]] = {}
    total = 0.0
    for feature in features:
        value = (feature.get("properties") or {}).get(prop) if prop else None
        name = UNLABELLED if value is None else str(value)
        area = area_m2(feature.get("geometry"))
        entry = classes.setdefault(name, {"count": 0, "area_m2": 0.0})
        entry["count"] += 1
        entry["area_m2"] += area
        total += area
    return Counted(len(features), total, classes)
