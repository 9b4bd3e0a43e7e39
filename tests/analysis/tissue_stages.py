"""Python callable stages that chain the cell statistics after the image stages (typing, interaction
statistics), imported by path as a user's would be."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.analysis import neighbours, stats, typing
from modelyard.pipelines.stages import StageCall


def _cells(call: StageCall) -> dict[str, Any]:
    return dict(call.inputs["cells"])


def cell_types(call: StageCall) -> dict[str, Any]:
    """k-means (seeded) on the marker means named in ``markers``."""
    cells = _cells(call)["cells"]
    markers = np.array([[c[f"mean_{m}"] for m in call.stage_params["markers"]] for c in cells])
    n_types = int(call.stage_params["n_types"])
    return {"n_types": n_types, "types": typing.cluster(markers, n_types, seed=0).tolist()}


def statistics(call: StageCall) -> dict[str, Any]:
    """Interaction counts, log-odds and a permutation test over the 6 nearest neighbours."""
    cells = _cells(call)["cells"]
    typed = call.inputs["type"]
    coords = np.array([[c["y"], c["x"]] for c in cells])
    graph = neighbours.knn_graph(coords, 6)
    found = stats.interactions(graph, typed["types"], typed["n_types"], n_perms=50, seed=0)
    return found.to_json()
