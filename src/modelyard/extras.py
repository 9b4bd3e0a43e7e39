"""modelyard's optional extras (``pip install 'modelyard[NAME]'``): the modules each brings, whether they
are installed here, and the one error code raises when it needs a missing one.

- ``analysis`` — the tissue-imaging stages and their Python API (``modelyard.analysis``): scipy,
  scikit-image, scikit-learn, dask.distributed, tifffile and zarr, about 240 MB a server without tissue
  images does not need. Without it the ``tissue_*`` stage kinds stay registered and listed, a spec that
  uses one is refused when it is applied (``Uses.extra``, 422 naming the install command), and importing
  a module of the Python API that needs the extra raises ``ExtraMissing``.

(``ann``, hnswlib, is optional differently: without it catalog search stays exact, see ``catalog.ann``.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

EXTRAS: dict[str, tuple[str, ...]] = {
    "analysis": ("scipy", "skimage", "sklearn", "dask", "distributed", "tifffile", "zarr"),
}


def install_command(extra: str) -> str:
    """What to run to install ``extra``."""
    return f"pip install 'modelyard[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (looked up, not imported: cheap)."""
    gone = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            gone.append(module)
    return gone


def needs(extra: str, what: str, modules: Sequence[str]) -> str:
    """The one sentence that says ``what`` needs ``extra``, which of its ``modules`` are missing, and
    what to install."""
    return f"{what} needs the {extra} extra ({', '.join(modules)} not installed): {install_command(extra)}"


class ExtraMissing(ImportError):
    """Code that needs an optional extra runs without it; the message names the missing modules and
    the install command."""

    def __init__(self, extra: str, what: str, modules: Sequence[str]):
        super().__init__(needs(extra, what, modules), name=modules[0] if modules else None)
        self.extra = extra


def require(extra: str, what: str) -> None:
    """Raise ``ExtraMissing`` unless every module of ``extra`` can be imported."""
    gone = missing(extra)
    if gone:
        raise ExtraMissing(extra, what, gone)


def absent(extra: str, what: str, error: ImportError) -> ExtraMissing:
    """The error to raise instead of ``error``, the ``ImportError`` of a module of ``extra`` met while
    importing ``what``: every missing module of the extra listed, not just the first one tried."""
    return ExtraMissing(extra, what, missing(extra) or [error.name or str(error)])
