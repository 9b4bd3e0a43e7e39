"""Every third-party package the code imports is declared in pyproject.toml, so an install from the
project's own metadata (not the lock file) has everything it imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "modelyard"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The dependencies, and the optional extras the code itself offers (``ann``), not ``dev``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [
        spec for name, specs in project["optional-dependencies"].items() if name != "dev" for spec in specs
    ]
    specs = [*project["dependencies"], *extras]
    return {_normal(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in specs}


def _imported_top_levels() -> dict[str, Path]:
    """Top-level module names imported at module level or in functions, outside ``try`` blocks (an
    import guarded by ``try`` is an optional extra, declared or not)."""
    found: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        guarded = {
            id(node) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for node in ast.walk(s)
        }
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], path)
    return found


def test_every_imported_third_party_package_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for top, path in sorted(_imported_top_levels().items()):
        if top in sys.stdlib_module_names or top == "modelyard" or top == "__future__":
            continue
        owners = {_normal(d) for d in distributions.get(top, [top])}
        if not owners & declared:
            missing.append(f"{top} (from {sorted(owners)}, imported in {path.relative_to(ROOT)})")
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
