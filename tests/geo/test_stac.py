"""STAC validation, band normalisation and footprints: the pure parts, table-driven."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.geo.bands import COMMON_NAMES, Band, normalise
from modelyard.geo.shapes import ShapeError, footprint
from modelyard.geo.stac import check_item, shipped
from tests.geo.conftest import EO_V2, s2_item, square, stac11_item


def test_every_extension_version_the_issue_names_is_shipped() -> None:
    urls = shipped()
    for url in (
        "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json",
        "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
        "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        EO_V2,
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/label/v1.0.1/schema.json",
        "https://proj.org/schemas/v0.7/projjson.schema.json",
    ):
        assert url in urls


@pytest.mark.parametrize("make", [s2_item, stac11_item])
def test_realistic_items_are_valid(make: Any) -> None:
    assert check_item(make()).ok


def _broken(change: Any) -> list[tuple[str, str]]:
    item = s2_item()
    change(item)
    return [(p.path, p.rule) for p in check_item(item).problems]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda i: i.pop("id"), ("$", "required")),
        (
            lambda i: i["properties"].update({"eo:cloud_cover": 140}),
            ('$.properties["eo:cloud_cover"]', "maximum"),
        ),
        (lambda i: i["properties"].update({"proj:epsg": "utm"}), ('$.properties["proj:epsg"]', "type")),
        (lambda i: i.update({"bbox": [0, 0, 1]}), ("$.bbox", "oneOf")),
    ],
)
def test_schema_problems_name_path_and_rule(change: Any, expected: tuple[str, str]) -> None:
    assert expected in _broken(change)


def test_stac_1_1_eo_v2_fields_are_checked() -> None:
    item = stac11_item()
    item["assets"]["B04"]["bands"][0]["eo:center_wavelength"] = "red"
    problems = [(p.path, p.rule) for p in check_item(item).problems]
    assert ('$.assets.B04.bands[0]["eo:center_wavelength"]', "type") in problems


def test_common_name_table_and_asset_merge() -> None:
    item = s2_item(bands=[])
    item["properties"]["gsd"] = 30
    item["assets"]["visual"] = {"href": "x", "eo:bands": [{"name": "R", "common_name": "red"}, {"name": "G"}]}
    item["properties"]["eo:bands"] = [{"name": "G", "common_name": "green", "center_wavelength": 0.56}]
    out = normalise(item)
    lo, hi = COMMON_NAMES["red"]
    assert Band("R", "red", round((lo + hi) / 2, 6), round(hi - lo, 6), 30.0) in out.bands
    green = next(b for b in out.bands if b.name == "G")
    assert (green.common_name, green.center_wavelength, green.gsd) == ("green", 0.56, 30.0)
    assert out.gsd == 30 and out.problems == []


def test_band_coverage_is_centre_plus_minus_half_width() -> None:
    band = Band("B04", "red", 0.665, 0.038, 10.0)
    assert band.covers(0.646) and band.covers(0.684) and not band.covers(0.645) and not band.covers(0.7)
    assert not Band("X", None, None, None, 10.0).covers(0.665)


@pytest.mark.parametrize(
    ("geometry", "rule"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "ring"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [181, 0], [1, 1], [0, 0]]]}, "longitude"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, "a"], [0, 0]]]}, "position"),
        ({"type": "MultiPolygon", "coordinates": []}, "polygon"),
        (
            {
                "type": "Polygon",
                "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[5, 5], [6, 5], [6, 6], [5, 5]]],
            },
            "hole-lies-outside-shell",
        ),
    ],
)
def test_footprints_refused_with_the_rule(geometry: dict[str, Any], rule: str) -> None:
    with pytest.raises(ShapeError) as raised:
        footprint(copy.deepcopy(geometry), ["geometry"])
    assert raised.value.problems[0].rule == rule


def test_footprint_of_a_plain_square_is_unchanged_but_for_floats() -> None:
    shape = footprint(square(1, 2))
    assert shape.bbox == (1, 2, 2, 3) and shape.geojson["type"] == "Polygon"
