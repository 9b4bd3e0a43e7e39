"""Label results, pure: geodesic area, the class property, per-class counts, and the checks."""

from __future__ import annotations

import math

import pytest

from modelyard.geo import labels
from tests.geo import label_command
from tests.geo.conftest import s2_item, square

R = labels.EARTH_RADIUS_M


def spherical_cap_band(lat1: float, lat2: float, dlon: float) -> float:
    """Exact area of a lon/lat rectangle on the sphere."""
    return R * R * math.radians(dlon) * abs(math.sin(math.radians(lat2)) - math.sin(math.radians(lat1)))


@pytest.mark.parametrize(("lon", "lat", "size"), [(0, 0, 1), (5, 45, 0.5), (-70, -60, 2), (179, 10, 0.25)])
def test_the_area_of_a_lon_lat_square_is_the_exact_spherical_one(lon: float, lat: float, size: float) -> None:
    assert labels.area_m2(square(lon, lat, size)) == pytest.approx(
        spherical_cap_band(lat, lat + size, size), rel=1e-9
    )


def test_holes_are_subtracted_and_multipolygons_added_and_points_have_no_area() -> None:
    outer, hole = square(0, 0, 1)["coordinates"][0], square(0.25, 0.25, 0.5)["coordinates"][0]
    with_hole = {"type": "Polygon", "coordinates": [outer, hole]}
    assert labels.area_m2(with_hole) == pytest.approx(
        labels.area_m2(square(0, 0, 1)) - labels.area_m2(square(0.25, 0.25, 0.5))
    )
    multi = {
        "type": "MultiPolygon",
        "coordinates": [square(0, 0, 1)["coordinates"], square(2, 0, 1)["coordinates"]],
    }
    assert labels.area_m2(multi) == pytest.approx(2 * labels.area_m2(square(0, 0, 1)), rel=1e-6)
    assert labels.area_m2({"type": "Point", "coordinates": [0, 0]}) == 0
    assert labels.area_m2(None) == 0


def test_features_are_counted_per_class_with_their_area() -> None:
    item = s2_item()
    counted = labels.summarise(label_command.ships(item)["features"], "class")
    assert counted.features == 4
    assert counted.classes["ship"]["count"] == 3 and counted.classes["wake"]["count"] == 1
    assert counted.area_m2 == pytest.approx(sum(c["area_m2"] for c in counted.classes.values()))
    unnamed = labels.summarise([{"type": "Feature", "geometry": None, "properties": {}}], "class")
    assert unnamed.classes == {labels.UNLABELLED: {"count": 1, "area_m2": 0.0}}


def test_the_class_property_comes_from_label_classes_then_label_properties() -> None:
    item = label_command.label_item(s2_item())
    assert labels.class_property(item) == "class"
    item["properties"]["label:classes"] = []
    item["properties"]["label:properties"] = ["kind"]
    assert labels.class_property(item) == "kind"
    item["properties"]["label:properties"] = None
    assert labels.class_property(item) is None


def test_a_valid_label_item_names_its_geojson_asset() -> None:
    key, asset = labels.check_label_item(label_command.label_item(s2_item()))
    assert key == "labels" and asset["type"] == "application/geo+json"


def test_a_label_item_missing_fields_lists_each() -> None:
    item = label_command.label_item(s2_item())
    for name in ("label:tasks", "label:methods"):
        del item["properties"][name]
    with pytest.raises(labels.LabelProblems) as found:
        labels.check_label_item(item)
    paths = [p.path for p in found.value.problems]
    assert "$.properties['label:tasks']" in paths and "$.properties['label:methods']" in paths
