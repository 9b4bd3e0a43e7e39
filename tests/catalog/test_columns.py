"""Filters found in numpy over per-field columns agree with the same filters in SQL, record for record,
including missing values, negations and and/or; a filter numpy cannot answer the way SQL would (a range
over strings) is left to SQL."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.catalog import columns, search, service
from modelyard.catalog.filters import Planner
from modelyard.catalog.models import Record
from modelyard.catalog.schemas import Filter
from tests.catalog.test_search import works

__all__ = ["works"]

FILTERS: list[dict[str, Any]] = [
    {"field": "attributes.year", "op": "gte", "value": 1850},
    {"field": "attributes.year", "op": "ne", "value": 1807},
    {"field": "attributes.kind", "value": "ink"},
    {"field": "attributes.kind", "op": "ne", "value": "ink"},
    {"field": "attributes.kind", "op": "in", "value": ["oil", "print", "absent"]},
    {"field": "attributes.framed", "value": True},
    {"field": "attributes.framed", "op": "ne", "value": True},
    {"field": "attributes.framed", "op": "exists", "value": False},
    {"field": "embed.label", "value": "a"},
    {"field": "id", "op": "in", "value": ["w001", "w002", "nope"]},
    {
        "or": [
            {"field": "attributes.kind", "value": "oil"},
            {"field": "attributes.year", "op": "lt", "value": 1830},
        ]
    },
    {
        "and": [
            {"field": "attributes.framed", "op": "exists"},
            {"field": "attributes.year", "op": "lte", "value": 1900},
        ]
    },
]


def test_a_filter_in_numpy_passes_exactly_the_records_sql_passes(api: Any, works: np.ndarray) -> None:
    ctx = api.ctx
    for body in FILTERS:
        f = Filter.model_validate(body)
        with ctx.uow() as session:
            plan = Planner(ctx, session, service.collection_state(session, "works"))
            cond = plan.condition(f, "filter")
            by_sql = sorted(session.scalars(plan.select(Record.pk).where(cond)))
            by_numpy = search._by_columns(ctx.catalog.get(), plan, f)
        assert by_numpy is not None, body
        assert by_numpy.tolist() == by_sql, body
        assert 0 < len(by_sql) < 240, body


def test_a_range_over_strings_is_left_to_sql(api: Any, works: np.ndarray) -> None:
    f = Filter.model_validate({"field": "attributes.kind", "op": "gt", "value": "ink"})
    with api.ctx.uow() as session:
        plan = Planner(api.ctx, session, service.collection_state(session, "works"))
        plan.condition(f, "filter")
        assert search._by_columns(api.ctx.catalog.get(), plan, f) is None
    assert columns.names(f) == {"attributes.kind"}
