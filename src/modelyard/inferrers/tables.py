"""Summary of a table: its row count and, per column, its name, Arrow type and how many values are null."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def table_stats(table: pa.Table) -> dict[str, Any]:
    """``rows``, and ``columns`` in order, each ``{"name", "type", "nulls"}``."""
    columns = [
        {"name": name, "type": str(column.type), "nulls": int(column.null_count)}
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    return {"rows": int(table.num_rows), "columns": columns}
