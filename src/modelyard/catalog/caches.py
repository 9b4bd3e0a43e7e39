"""What the catalog keeps in memory in one process (a typed field of the context, ``ctx.catalog``):
everything here is derived from the database and checked against a collection's ``revision`` (or its
deletion count) before use, so a stale entry is rebuilt, never served."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelyard.catalog.ann import AnnConfig
    from modelyard.catalog.columns import Column
    from modelyard.catalog.vectors import VectorIndex


@dataclass
class CatalogCaches:
    """Per collection: derived facts (field types, current versions), the record sets of recent filters,
    and the vector indexes of each (field, version)."""

    # (collection id, name) -> (revision, value)
    derived: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    # (collection id, filter JSON) -> (revision, record pks that pass it), least recently used first
    allowed: OrderedDict[tuple[str, bytes], tuple[int, np.ndarray]] = field(default_factory=OrderedDict)
    # (collection id, field name) -> (revision, the field over every record): filters in numpy
    columns: dict[tuple[str, str], tuple[int, Column]] = field(default_factory=dict)
    # (collection id, producer, field path, version) -> index
    indexes: dict[tuple[str, str, str, str], VectorIndex] = field(default_factory=dict)
    # where and above what size vector indexes get an ANN index (None: exact search only)
    ann: AnnConfig | None = None

    def forget(
        self, collection_id: str, producer: str | None = None, keep: frozenset[str] = frozenset()
    ) -> None:
        """Drop this process's vector indexes of a collection (of one producer, if given) at versions not
        in ``keep``, and their saved ANN graphs: derived data, rebuilt if ever asked for again."""
        for key in list(self.indexes):
            if key[0] == collection_id and producer in (None, key[1]) and key[3] not in keep:
                self.indexes.pop(key, None)
        if self.ann is not None and self.ann.folder is not None:
            from modelyard.catalog.ann import evict

            evict(self.ann.folder, collection_id, producer, keep)
