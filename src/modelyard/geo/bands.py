"""Spectral bands and ground sampling distance of a STAC item, normalised.

Bands come from eo v1.x (``eo:bands`` in properties or assets: ``name``, ``common_name``,
``center_wavelength``, ``full_width_half_max``) or from STAC 1.1 / eo v2 (``bands`` with ``eo:``-prefixed
fields); an asset's band naming a band of the properties takes what it does not say from it. Where a band
gives only a common name, the eo extension's common-name table gives its range (centre and full width at
half maximum). GSD is the band's, else its asset's, else the item's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.geo.stac.validate import StacProblem, json_path

# eo extension common names: (lowest, highest) wavelength in µm
COMMON_NAMES: dict[str, tuple[float, float]] = {
    "pan": (0.40, 1.00),
    "coastal": (0.40, 0.45),
    "blue": (0.45, 0.53),
    "green": (0.51, 0.60),
    "green05": (0.51, 0.55),
    "yellow": (0.58, 0.62),
    "red": (0.62, 0.69),
    "rededge": (0.69, 0.79),
    "rededge071": (0.69, 0.73),
    "rededge075": (0.73, 0.76),
    "rededge078": (0.76, 0.79),
    "nir": (0.76, 1.00),
    "nir08": (0.80, 0.90),
    "nir09": (0.90, 1.00),
    "cirrus": (1.35, 1.40),
    "swir16": (1.55, 1.75),
    "swir22": (2.08, 2.35),
    "lwir": (10.4, 12.5),
    "lwir11": (10.5, 11.5),
    "lwir12": (11.5, 12.5),
}


@dataclass(frozen=True, slots=True)
class Band:
    """One spectral band: centre and full width at half maximum in µm (None when unknown) and its GSD."""

    name: str | None
    common_name: str | None
    center_wavelength: float | None
    full_width_half_max: float | None
    gsd: float | None

    def covers(self, wavelength: float) -> bool:
        """Whether ``wavelength`` (µm) falls inside centre ± FWHM/2 (just the centre when no FWHM)."""
        if self.center_wavelength is None:
            return False
        half = (self.full_width_half_max or 0.0) / 2
        return self.center_wavelength - half - 1e-9 <= wavelength <= self.center_wavelength + half + 1e-9

    def public(self) -> dict[str, Any]:
        """The stored and wire form."""
        return {
            "name": self.name,
            "common_name": self.common_name,
            "center_wavelength": self.center_wavelength,
            "full_width_half_max": self.full_width_half_max,
            "gsd": self.gsd,
        }

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> Band:
        """A band from its stored form."""
        return cls(
            data.get("name"),
            data.get("common_name"),
            data.get("center_wavelength"),
            data.get("full_width_half_max"),
            data.get("gsd"),
        )


@dataclass(frozen=True, slots=True)
class Spectral:
    """An item's bands and GSD (the item's own, else the finest of its bands'), or what is missing."""

    bands: list[Band]
    gsd: float | None
    problems: list[StacProblem]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _field(band: dict[str, Any], key: str) -> Any:
    return band.get(f"eo:{key}", band.get(key))


def _raw(band: dict[str, Any]) -> dict[str, Any]:
    """A band's fields under one set of names, whichever eo version wrote them."""
    return {
        "name": band.get("name") if isinstance(band.get("name"), str) else None,
        "common_name": _field(band, "common_name") if isinstance(_field(band, "common_name"), str) else None,
        "center_wavelength": _number(_field(band, "center_wavelength")),
        "full_width_half_max": _number(_field(band, "full_width_half_max")),
        "gsd": _number(band.get("gsd")),
    }


def _band(raw: dict[str, Any], gsd: float | None) -> Band:
    centre, width = raw["center_wavelength"], raw["full_width_half_max"]
    table = COMMON_NAMES.get(raw["common_name"] or "")
    if table is not None and centre is None:
        centre = round((table[0] + table[1]) / 2, 6)
    if table is not None and width is None:
        width = round(table[1] - table[0], 6)
    return Band(raw["name"], raw["common_name"], centre, width, raw["gsd"] if raw["gsd"] is not None else gsd)


def _lists(holder: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for key in ("eo:bands", "bands"):
        value = holder.get(key)
        if isinstance(value, list):
            found += [b for b in value if isinstance(b, dict)]
    return found


def normalise(item: dict[str, Any]) -> Spectral:
    """The bands and GSD of a schema-valid ``item``; a problem when it has no band with a wavelength."""
    properties = item.get("properties") or {}
    item_gsd = _number(properties.get("gsd"))
    named = {r["name"]: r for r in map(_raw, _lists(properties)) if r["name"]}
    found: dict[tuple[Any, ...], Band] = {}
    unnamed = [r for r in map(_raw, _lists(properties)) if not r["name"]]
    assets = item.get("assets") or {}
    used: set[str] = set()
    for asset in assets.values() if isinstance(assets, dict) else []:
        if not isinstance(asset, dict):
            continue
        asset_gsd = _number(asset.get("gsd"))
        for raw in map(_raw, _lists(asset)):
            base = named.get(raw["name"] or "", {})
            merged = {k: raw[k] if raw[k] is not None else base.get(k) for k in raw}
            used.add(raw["name"] or "")
            band = _band(merged, asset_gsd if asset_gsd is not None else item_gsd)
            found.setdefault(tuple(band.public().values()), band)
    for raw in [r for name, r in named.items() if name not in used] + unnamed:
        band = _band(raw, item_gsd)
        found.setdefault(tuple(band.public().values()), band)
    bands = list(found.values())
    gsds = [b.gsd for b in bands if b.gsd is not None]
    gsd = item_gsd if item_gsd is not None else (min(gsds) if gsds else None)
    problems = []
    if not any(b.center_wavelength is not None for b in bands):
        problems.append(
            StacProblem(
                json_path(["properties"]),
                "eo:bands",
                "no spectral band with a wavelength: give eo:bands (eo v1.x) or bands with "
                "eo:center_wavelength or eo:common_name (STAC 1.1, eo v2), in properties or assets",
            )
        )
    return Spectral(bands, gsd, problems)
