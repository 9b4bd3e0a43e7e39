"""The cell-typing and statistics stage kinds of pipeline specs, each a thin call of this package's functions.
Both read a per-cell table: the ``tissue_cells`` stage's JSON (``{"cells": [{"x", "y", ...}, ...]}``), a
list of such rows, a dict of columns, or Parquet bytes.

- ``tissue_type`` -> the table with a ``type`` column. ``params``: ``n_types``; ``method`` (``kmeans``, the
  default, ``gmm``, or ``given``: the table's own ``type_column`` is checked and kept); ``markers`` (the
  columns to cluster on; every ``mean_*`` column by default); ``seed``. ``format: parquet`` gives Parquet
  bytes instead of JSON.
- ``tissue_stats`` -> JSON: frequencies, the interaction counts, the log-odds ratio and its permutation
  test (``stats.Interactions.to_json``). ``params``: ``n_types``; ``k`` nearest neighbours (6 by default)
  or ``radius``; ``n_perms`` (100), ``seed`` (0), ``variant`` (``standard`` or ``upper_triangle``),
  ``type_column`` (``type``).

Bad cell data (``analysis.errors``) fails that event's stage run with the rule it broke as the reason.
Both need the analysis extra, imported when a stage runs (a spec is refused without it, ``extras``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from modelyard.analysis.errors import InvalidCells
from modelyard.analysis.params import MAX_K, MAX_PERMUTATIONS, MAX_TYPES, TYPING_METHODS, VARIANTS
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.fields import Checker
from modelyard.pipelines.spec.kinds import KindConfig, Uses, register_stage_kind
from modelyard.pipelines.stages import Item, Outcome, StageEnv, side_by_side, single, timed

TABLE_TYPES = ("json", "bytes")
Columns = dict[str, np.ndarray]


def read_table(value: Any) -> Columns:
    """A per-cell table as columns, from JSON (rows, ``{"cells": rows}`` or columns) or Parquet bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if data[:4] == b"PAR1":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
            return {name: table.column(name).to_numpy() for name in table.column_names}
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise InvalidCells("the cell table is neither Parquet nor JSON", field="inputs") from None
    if isinstance(value, Mapping) and "cells" in value:
        value = value["cells"]
    if isinstance(value, list):
        if not value:
            raise InvalidCells("the cell table is empty: there are no cells", field="inputs")
        if not all(isinstance(row, Mapping) for row in value):
            raise InvalidCells("the cell table's rows must be objects", field="inputs")
        names = list(value[0])
        try:
            return {name: np.asarray([row[name] for row in value]) for name in names}
        except KeyError as exc:
            raise InvalidCells(
                f"a cell row has no {exc.args[0]!r}, which the first has", field="inputs"
            ) from None
    if isinstance(value, Mapping):
        columns = {str(k): np.asarray(v) for k, v in value.items()}
        lengths = {len(c) for c in columns.values() if c.ndim == 1}
        if len(lengths) > 1:
            raise InvalidCells(
                f"the cell table's columns differ in length: {sorted(lengths)}", field="inputs"
            )
        return columns
    raise InvalidCells("the input is not a cell table (rows, columns or Parquet)", field="inputs")


def _column(table: Columns, name: str, field: str) -> np.ndarray:
    if name not in table:
        raise InvalidCells(f"the cell table has no {name!r} column (it has {', '.join(table)})", field=field)
    return table[name]


def _rows(table: Columns) -> list[dict[str, Any]]:
    cols = {k: v.tolist() for k, v in table.items()}
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def _params(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    params = doc.get("params", {})
    return params if isinstance(params, Mapping) else {}


def _check_common(params: Mapping[str, Any], where: str, check: Checker) -> None:
    check.integer(params.get("n_types"), f"{where}.params.n_types", 1, MAX_TYPES)
    if "seed" in params:
        check.integer(params["seed"], f"{where}.params.seed", 0, 2**32 - 1)


class _CellsKind:
    """What both kinds share: one call per event, the events of a batch side by side."""

    name = ""
    fields: frozenset[str] = frozenset()

    def uses(self, spec: StageSpec) -> Uses:
        """The analysis extra."""
        return Uses(extra="analysis")

    def one(self, spec: StageSpec, value: Any) -> Any:
        raise NotImplementedError

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """``one`` per event; a failing event fails alone."""

        def call(item: Item) -> Outcome:
            return timed(lambda: self.one(spec, single(item)))

        return side_by_side(items, call, spec.limits.concurrency, spec.name), ""


class TypeKind(_CellsKind):
    """``type: tissue_type``: a ``type`` per cell, clustered from markers or given."""

    name = "tissue_type"
    fields = frozenset({"format"})

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The method, its parameters and the output format."""
        params = _params(doc)
        _check_common(params, where, check)
        if params.get("method", "kmeans") not in (*TYPING_METHODS, "given"):
            check.add(f"{where}.params.method", f"must be one of {', '.join(TYPING_METHODS)}, given")
        markers = params.get("markers")
        if markers is not None and (
            not isinstance(markers, list) or not all(isinstance(m, str) for m in markers)
        ):
            check.add(f"{where}.params.markers", "must be a list of column names")
        fmt = doc.get("format", "json")
        if fmt not in ("json", "parquet"):
            check.add(f"{where}.format", "must be json or parquet")
            fmt = "json"
        return KindConfig({"format": fmt}, TABLE_TYPES, "json" if fmt == "json" else "bytes")

    def one(self, spec: StageSpec, value: Any) -> Any:
        from modelyard.analysis import typing

        params = spec.params
        table = read_table(value)
        n_types, method = int(params["n_types"]), params.get("method", "kmeans")
        column = params.get("type_column", "type")
        if method == "given":
            types = typing.given(_column(table, column, "params.type_column"), n_types)
        else:
            names = params.get("markers") or sorted(c for c in table if c.startswith("mean_"))
            if not names:
                raise InvalidCells(
                    "the cell table has no mean_* marker columns to cluster on", field="markers"
                )
            markers = np.column_stack([_column(table, n, "params.markers") for n in names])
            types = typing.cluster(markers, n_types, method=method, seed=int(params.get("seed", 0)))
        table["type"] = types
        counts = np.bincount(types, minlength=n_types).tolist()
        print(f"{len(types)} cells typed by {method}: {counts}")
        if spec.config["format"] == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            buf = pa.BufferOutputStream()
            pq.write_table(pa.table(table), buf)
            return bytes(buf.getvalue().to_pybytes())
        return {"count": len(types), "n_types": n_types, "method": method, "cells": _rows(table)}


class StatsKind(_CellsKind):
    """``type: tissue_stats``: frequencies, interactions, log-odds and their permutation test."""

    name = "tissue_stats"

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """The neighbourhood, the permutations and the variant."""
        params = _params(doc)
        _check_common(params, where, check)
        if "k" in params and "radius" in params:
            check.add(f"{where}.params", "give k or radius, not both")
        if "k" in params:
            check.integer(params["k"], f"{where}.params.k", 1, MAX_K)
        if "radius" in params:
            check.number(params["radius"], f"{where}.params.radius", 1e-9, 1e12)
        if "n_perms" in params:
            check.integer(params["n_perms"], f"{where}.params.n_perms", 0, MAX_PERMUTATIONS)
        if params.get("variant", "standard") not in VARIANTS:
            check.add(f"{where}.params.variant", f"must be one of {', '.join(VARIANTS)}")
        return KindConfig({}, TABLE_TYPES, "json")

    def one(self, spec: StageSpec, value: Any) -> Any:
        from modelyard.analysis import neighbours, stats

        params = spec.params
        table = read_table(value)
        coords = np.column_stack([_column(table, "x", "inputs"), _column(table, "y", "inputs")])
        types = _column(table, params.get("type_column", "type"), "params.type_column")
        if "radius" in params:
            graph = neighbours.radius_graph(coords, float(params["radius"]))
            hood: dict[str, Any] = {"radius": float(params["radius"])}
        else:
            k = int(params.get("k", 6))
            graph, hood = neighbours.knn_graph(coords, k), {"k": k}
        result = stats.interactions(
            graph,
            types,
            int(params["n_types"]),
            n_perms=int(params.get("n_perms", 100)),
            seed=int(params.get("seed", 0)),
            variant=params.get("variant", "standard"),
        )
        print(f"{result.n_cells} cells, {graph.nnz} neighbour pairs, {result.n_perms} permutations")
        return result.to_json() | {"neighbours": hood, "pairs": int(graph.nnz)}


register_stage_kind(TypeKind())
register_stage_kind(StatsKind())
