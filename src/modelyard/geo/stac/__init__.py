"""STAC validation against the JSON Schemas shipped in ``schemas/`` (offline: a schema URL the package
does not carry is reported, never fetched).

- ``validate`` — ``check_item``: an item against its core schema and each extension it declares; each
  problem names its JSON path and the rule broken.
"""

from modelyard.geo.stac.validate import ItemCheck, StacProblem, check_item, shipped

__all__ = ["ItemCheck", "StacProblem", "check_item", "shipped"]
