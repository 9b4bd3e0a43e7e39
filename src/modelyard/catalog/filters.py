"""Filters of a catalog search: field names turned into SQL expressions over a collection's records
(attributes by JSON path, inferred fields through a join of the producer's current version), each value
checked against the field's type, and what is derived from a collection's rows kept until its next write.
No FastAPI, no DBOS."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, and_, false, or_, select, true
from sqlalchemy.orm import Session, aliased

from modelyard.catalog.fields import field_types
from modelyard.catalog.models import Inference, Record
from modelyard.catalog.schemas import Filter
from modelyard.catalog.versions import current_versions
from modelyard.context import AppContext
from modelyard.errors import InvalidQuery

if TYPE_CHECKING:
    from modelyard.catalog.service import CollectionState

MAX_IN = 1000
T = TypeVar("T")
BASE = {
    "id": Record.record_id,
    "title": Record.title,
    "description": Record.description,
    "source": Record.source,
}
SCALARS = {"string": (str,), "number": (int, float), "boolean": (bool,)}


class Planner:
    """Turns field names into SQL expressions over a collection's records (joining inferences as needed)."""

    def __init__(self, ctx: AppContext, session: Session, collection: CollectionState):
        self.ctx, self.session = ctx, session
        self.collection = collection
        self.collection_id = collection.id
        self.types = self.cached("fields", lambda: field_types(session, collection.id))
        # read once: every statement of the query uses these versions, whatever switches meanwhile
        self.versions = self.cached("versions", lambda: current_versions(session, collection.id))
        self.joins: dict[str, Any] = {}

    def cached(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, kept until the collection's next write (field types, current versions)."""
        cache = self.ctx.catalog.get().derived
        key, revision = (self.collection_id, name), self.collection.revision
        hit = cache.get(key)
        if hit is None or hit[0] != revision:
            hit = cache[key] = (revision, compute())
        value: T = hit[1]
        return value

    def field(self, name: str, where: str) -> tuple[str, Any]:
        """The type of field ``name`` and an expression of its value."""
        if name not in self.types:
            known = ", ".join(sorted(self.types)[:40])
            raise InvalidQuery(f"unknown field {name!r} (fields of this collection: {known})", field=where)
        kind = self.types[name][0]
        if name in BASE:
            return kind, BASE[name]
        if name.startswith("attributes."):
            element = Record.attributes[tuple(name.split(".")[1:])]
        else:
            producer, *path = name.split(".")
            if producer not in self.joins:
                self.joins[producer] = aliased(Inference, name=f"inf_{len(self.joins)}")
            column = self.joins[producer].values
            if not path:
                return kind, column
            element = column[tuple(path)]
        if kind == "number":
            return kind, element.as_float()
        if kind == "boolean":
            return kind, element.as_boolean()
        return kind, element.as_string()

    def select(self, *columns: Any) -> Select[Any]:
        """``columns`` over the collection's records with every inference joined that was named."""
        query = select(*columns).select_from(Record)
        for producer, alias in self.joins.items():
            query = query.outerjoin(
                alias,
                and_(
                    alias.record_pk == Record.pk,
                    alias.producer == producer,
                    alias.version == self.versions.get(producer, ""),
                ),
            )
        return query.where(Record.collection_id == self.collection_id)

    def condition(self, f: Filter, where: str) -> Any:
        """The SQL condition of a filter."""
        if f.all_of is not None or f.any_of is not None:
            if f.field is not None or (f.all_of is not None and f.any_of is not None):
                raise InvalidQuery("a filter is one condition, or one and/or list", field=where)
            if f.all_of is not None:
                return and_(true(), *[self.condition(x, f"{where}.and[{i}]") for i, x in enumerate(f.all_of)])
            assert f.any_of is not None
            return or_(false(), *[self.condition(x, f"{where}.or[{i}]") for i, x in enumerate(f.any_of)])
        if f.field is None:
            raise InvalidQuery("a condition needs a field", field=f"{where}.field")
        kind, expr = self.field(f.field, f"{where}.field")
        return _compare(f.field, kind, expr, f.op, f.value, where)


def _check_value(name: str, kind: str, value: Any, where: str) -> None:
    ok = isinstance(value, SCALARS.get(kind, ()))
    if kind == "number" and isinstance(value, bool):
        ok = False
    if not ok:
        raise InvalidQuery(
            f"field {name!r} holds {kind} values; {value!r} is not one", field=f"{where}.value"
        )


def _compare(name: str, kind: str, expr: Any, op: str, value: Any, where: str) -> Any:
    if op == "exists":
        if value not in (None, True, False):
            raise InvalidQuery("exists takes true, false or nothing", field=f"{where}.value")
        return expr.is_(None) if value is False else expr.is_not(None)
    if kind not in SCALARS:
        raise InvalidQuery(f"field {name!r} is a {kind}: only exists applies to it", field=f"{where}.op")
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN:
            raise InvalidQuery(f"in takes a list of 1 to {MAX_IN} values", field=f"{where}.value")
        for v in value:
            _check_value(name, kind, v, where)
        return expr.in_(value)
    _check_value(name, kind, value, where)
    if op in ("lt", "lte", "gt", "gte") and kind == "boolean":
        raise InvalidQuery(f"field {name!r} is boolean: ranges do not apply", field=f"{where}.op")
    # only the one comparison asked for is built: SQLAlchemy refuses ``<`` against True or False
    ops: dict[str, Callable[[], Any]] = {
        "eq": lambda: expr == value,
        "ne": lambda: expr != value,
        "lt": lambda: expr < value,
        "lte": lambda: expr <= value,
        "gt": lambda: expr > value,
        "gte": lambda: expr >= value,
    }
    return ops[op]()
