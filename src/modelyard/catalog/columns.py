"""Filters evaluated in numpy: each scalar field a filter names is read once per collection revision into
an array beside the collection's record pks (through the very SQL expression the filter would use, so
both agree on every value), and a filter is then a few vectorised comparisons instead of a SQL scan of
JSON. A filter this module cannot evaluate (a range over strings, whose order is the database's
collation) returns None and runs in SQL. No FastAPI, no DBOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.catalog.filters import SCALARS, Planner
from modelyard.catalog.models import Record
from modelyard.catalog.schemas import Filter

RANGES = {"lt": np.less, "lte": np.less_equal, "gt": np.greater, "gte": np.greater_equal}


@dataclass
class Column:
    """One scalar field over every record of a collection, in pk order: ``present`` is false where the
    record has no value (SQL's NULL); strings are codes into ``words`` (sorted)."""

    kind: str
    pks: np.ndarray
    present: np.ndarray
    values: np.ndarray
    words: np.ndarray | None = None

    def code(self, value: str) -> int:
        """The code of a string, or -1 if no record holds it."""
        assert self.words is not None
        at = int(np.searchsorted(self.words, value))
        return at if at < len(self.words) and self.words[at] == value else -1


def load(plan: Planner, name: str) -> Column:
    """Read field ``name`` of every record of the plan's collection."""
    kind, expr = plan.field(name, "filter")
    rows = plan.session.execute(plan.select(Record.pk, expr).order_by(Record.pk)).all()
    pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    raw = [r[1] for r in rows]
    present = np.fromiter((v is not None for v in raw), dtype=bool, count=len(raw))
    if kind == "number":
        values = np.array([np.nan if v is None else float(v) for v in raw], dtype=np.float64)
        return Column(kind, pks, present, values)
    if kind == "boolean":
        return Column(kind, pks, present, np.array([bool(v) for v in raw], dtype=bool))
    words, codes = np.unique(
        np.array(["" if v is None else str(v) for v in raw], dtype=object), return_inverse=True
    )
    return Column(kind, pks, present, codes.astype(np.int32), words)


def names(f: Filter) -> set[str]:
    """The fields a filter names."""
    if f.all_of is not None or f.any_of is not None:
        return set().union(*(names(x) for x in (f.all_of or f.any_of or [])))
    return {f.field} if f.field is not None else set()


def evaluate(f: Filter, columns: dict[str, Column], n: int) -> np.ndarray | None:
    """The mask of records passing a filter already checked by ``Planner.condition``, or None if some
    condition is not one numpy can answer the way SQL would."""
    if f.all_of is not None or f.any_of is not None:
        parts = [evaluate(x, columns, n) for x in (f.all_of if f.all_of is not None else f.any_of) or []]
        if any(p is None for p in parts):
            return None
        out = np.ones(n, dtype=bool) if f.all_of is not None else np.zeros(n, dtype=bool)
        for part in parts:
            assert part is not None
            out = out & part if f.all_of is not None else out | part
        return out
    assert f.field is not None
    return _compare(columns[f.field], f.op, f.value)


def _compare(c: Column, op: str, value: Any) -> np.ndarray | None:
    if op == "exists":
        return ~c.present if value is False else c.present.copy()
    if c.kind not in SCALARS:
        return None
    if c.kind == "string":
        if op in RANGES:
            return None  # string order is the database's collation
        codes = [c.code(v) for v in (value if op == "in" else [value])]
        if op == "in":
            return _where(c, np.isin(c.values, codes))
        return _where(c, c.values == codes[0], negate=op == "ne")
    if op == "in":
        return _where(c, np.isin(c.values, np.asarray(value, dtype=c.values.dtype)))
    if op in RANGES:
        return _where(c, RANGES[op](c.values, value))
    return _where(c, c.values == value, negate=op == "ne")


def _where(c: Column, hit: np.ndarray, *, negate: bool = False) -> np.ndarray:
    """Records with a value that matches (or, negated, does not): a missing value matches nothing."""
    out: np.ndarray = c.present & (~hit if negate else hit)
    return out
