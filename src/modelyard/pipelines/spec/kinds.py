"""Stage kinds as plug-ins: each stage ``type`` of a spec is one registered ``StageKind`` object that reads
its own spec fields (every problem with its field path), says what its stage reads and produces and which
registered model and modules it uses, and runs a batch of events.

The built-in kinds are the modules in ``KIND_MODULES``; a package adds a kind by listing its module in the
``modelyard.stage_kinds`` entry-point group (or by calling ``register_stage_kind`` from code it imports
first). A kind module calls ``register_stage_kind`` once, at its own import. Nothing is imported or
registered when ``pipelines`` is imported: the kinds are loaded on the first look-up.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from modelyard.pipelines.spec import StageSpec
    from modelyard.pipelines.spec.fields import Checker
    from modelyard.pipelines.stages import Item, Outcome, StageEnv

KIND_MODULES: list[str] = [
    "modelyard.pipelines.stages.inferrer",
    "modelyard.pipelines.stages.model",
    "modelyard.pipelines.stages.python",
    "modelyard.pipelines.stages.command",
    "modelyard.analysis.stages_images",
    "modelyard.analysis.stages_stats",
]
ENTRY_POINTS = "modelyard.stage_kinds"  # each entry point names a module that registers kinds


@dataclass(frozen=True, slots=True)
class KindConfig:
    """What a kind read from a stage's fields: its config (part of the stage's fingerprint), the data
    types the stage reads (any one of them) and the type it produces."""

    config: dict[str, Any]
    accepts: tuple[str, ...]
    produces: str


@dataclass(frozen=True, slots=True)
class Uses:
    """What a stage runs that only the running system can check (when the spec is applied) and that
    decides its output beyond the spec (its model is part of its cache key): the registered model it runs,
    as (name, version) and the field naming it, the modules it imports, by field, and the optional extra
    of modelyard it needs installed (``extras.EXTRAS``; "" for none)."""

    model: tuple[str, Any] | None = None
    model_field: str = "model"
    modules: dict[str, str] = field(default_factory=dict)
    extra: str = ""


class StageKind(Protocol):
    """One stage ``type``: its own fields, how it reads them, and how it runs a batch."""

    @property
    def name(self) -> str:
        """The ``type`` a spec names it by."""
        ...

    @property
    def fields(self) -> frozenset[str]:
        """Its own stage fields (beyond the common ``inputs``, ``params``, limits...)."""
        ...

    def parse(self, doc: Mapping[str, Any], where: str, check: Checker) -> KindConfig:
        """Read its fields of stage ``doc`` (at field path ``where``), adding each problem to ``check``."""
        ...

    def uses(self, spec: StageSpec) -> Uses:
        """The registered model and the modules ``spec`` uses (``Uses()`` for neither)."""
        ...

    def run_batch(self, spec: StageSpec, items: list[Item], env: StageEnv) -> tuple[list[Outcome], str]:
        """One outcome per item (a failing event never fails the others), and what the stage resolved
        (a model version, or "")."""
        ...


_KINDS: dict[str, StageKind] = {}
_lock = threading.RLock()
_loaded = False


def register_stage_kind(kind: StageKind) -> StageKind:
    """Make ``kind`` a stage type of every pipeline spec; a second, different kind of the same name is a
    ``ValueError``. Returns ``kind``."""
    with _lock:
        _load()
        found = _KINDS.get(kind.name)
        if found is not None and found is not kind:
            raise ValueError(f"a stage kind named {kind.name!r} is already registered")
        _KINDS[kind.name] = kind
    return kind


def unregister_stage_kind(name: str) -> None:
    """Forget the kind ``name`` (specs naming it are refused from now on)."""
    with _lock:
        _KINDS.pop(name, None)


def stage_kinds() -> dict[str, StageKind]:
    """Every registered kind by name: the built-in ones first, in ``KIND_MODULES`` order."""
    with _lock:
        _load()
        return dict(_KINDS)


def stage_kind(name: str) -> StageKind:
    """The kind ``name``; a ``KeyError`` naming the known ones if none is registered."""
    kinds = stage_kinds()
    if name not in kinds:
        raise KeyError(f"unknown stage kind {name!r} (one of {', '.join(kinds)})")
    return kinds[name]


def _load() -> None:
    """Import the kind modules once (each registers its kinds); called with the lock held."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: the modules' own register calls come back here
    for module in KIND_MODULES:
        importlib.import_module(module)
    for point in entry_points(group=ENTRY_POINTS):
        importlib.import_module(point.module)
