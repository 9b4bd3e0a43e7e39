"""Strict validation errors of the analysis stages and functions: bad cell data is refused with the rule it
breaks and the input to blame, never turned into NaN. Each is a ``BadRequest`` (422), so an API answers it
as problem+json and a stage run fails with its ``detail`` as the reason.

    BadRequest (modelyard.errors)
    └── InvalidCells                422 invalid-cells      (empty input, a type out of range, lengths…)
        └── ZeroFrequency           422 zero-frequency     (a pair whose theoretical frequency is 0)
"""

from __future__ import annotations

from modelyard.errors import BadRequest


class InvalidCells(BadRequest):
    """Cell data breaks a rule of the statistic it is given to: no cells, a type that is negative or not
    below the declared number of types, a neighbour index out of range, arrays of different lengths.
    ``field`` names the input to blame (``types``, ``graph``, ``coords``…)."""

    status, code, title = 422, "invalid-cells", "Invalid cell data"


class ZeroFrequency(InvalidCells):
    """The log-odds of a pair of types is undefined because its theoretical frequency p_i · p_j is zero:
    one of the two types takes part in no neighbour pair. ``pair`` (in ``extra``) names the two types."""

    code, title = "zero-frequency", "Zero theoretical frequency"

    def __init__(self, i: int, j: int, missing: list[int]) -> None:
        names = ", ".join(str(t) for t in missing)
        super().__init__(
            f"the theoretical frequency of type pair ({i}, {j}) is zero: type(s) {names} take part in no "
            "neighbour pair, so their log-odds ratio is undefined (drop them from n_types or widen the "
            "neighbourhood)",
            field="types",
            extra={"pair": [i, j], "missing_types": missing},
        )
