"""Colour search: hex colours with weights become a query over the palette inferrer's colour histogram
(``bins``³ RGB bins, L2-normalised), each colour spread over neighbouring bins with a Gaussian so near
colours match (a red query scores crimson above blue). Pure numpy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from modelyard.errors import InvalidQuery

HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
SIGMA = 1.5  # spread of one query colour, in bins


def parse_hex(text: str, field: str) -> tuple[int, int, int]:
    """``#rgb`` or ``#rrggbb`` as an RGB triple; ``InvalidQuery`` naming ``field`` otherwise."""
    found = HEX.match(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise InvalidQuery(f"unknown colour {text!r}: use a hex colour such as #c0392b", field=field)
    digits = found.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


@lru_cache(maxsize=8)
def _centres(bins: int) -> np.ndarray:
    axis = np.arange(bins, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)  # bin index = (r * bins + g) * bins + b


def bins_of(dim: int) -> int:
    """The bins per channel of a histogram of ``dim`` cells."""
    bins: int = round(float(dim) ** (1 / 3))
    if bins**3 != dim:
        raise InvalidQuery(f"a palette histogram has a cube number of cells, not {dim}", field="colour.field")
    return bins


def query_vector(colours: Mapping[str, float], bins: int) -> np.ndarray:
    """The softened, L2-normalised histogram of weighted colours."""
    if not colours:
        raise InvalidQuery("give at least one colour", field="colour.colours")
    centres = _centres(bins)
    out = np.zeros(bins**3, dtype=np.float32)
    for text, weight in colours.items():
        rgb = np.array(parse_hex(text, f"colour.colours.{text}"), dtype=np.float32)
        if weight < 0:
            raise InvalidQuery(f"the weight of {text} must not be negative", field=f"colour.colours.{text}")
        at = np.floor(rgb * bins / 256.0)
        d2 = ((centres - at) ** 2).sum(axis=1)
        out += weight * np.exp(-d2 / (2 * SIGMA**2)).astype(np.float32)
    norm = float(np.linalg.norm(out))
    return out / norm if norm else out
