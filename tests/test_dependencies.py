"""Every third-party package the code imports is declared in pyproject.toml, so an install from the
project's own metadata (not the lock file) has everything it imports; and the two lock files split
what the server needs (``make run``) from the test, lint and benchmark tools (``make test``)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

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


def _pins(lock: str) -> dict[str, str]:
    """A lock file's ``name==version`` lines by normalised name."""
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        spec = line.partition("#")[0].strip()
        if spec:
            name, _, version = spec.partition("==")
            pins[_normal(name)] = version
    return pins


def _runtime_closure() -> tuple[set[str], list[str]]:
    """Every distribution the runtime dependencies need, transitively (extras and markers as this
    interpreter evaluates them), with the build backend ``make run`` installs modelyard with (no build
    isolation), and those of them the runtime lock leaves unpinned."""
    pinned = _pins("requirements.lock")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    todo = [Requirement(spec) for spec in specs]
    seen: set[tuple[str, frozenset[str]]] = set()
    unpinned = []
    while todo:
        req = todo.pop()
        name, extras = _normal(req.name), frozenset(req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in pinned:
            unpinned.append(name)
            continue
        for spec in importlib.metadata.distribution(name).requires or []:
            need = Requirement(spec)
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append(need)
    return {name for name, _ in seen}, sorted(set(unpinned))


def test_runtime_lock_pins_what_the_server_needs_and_no_development_tool() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    needed, unpinned = _runtime_closure()
    assert unpinned == [], "runtime dependencies resolved without a pin in requirements.lock"
    assert set(runtime) == needed, "requirements.lock pins something the runtime does not need"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = {_normal(Requirement(spec).name) for spec in project["optional-dependencies"]["dev"]}
    assert tools <= set(dev), "every development tool is pinned in requirements-dev.lock"
    assert not set(runtime) & set(dev), "a package is pinned in both lock files"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is what runs the two commands")
def test_make_run_installs_only_the_runtime_lock_and_make_test_both(tmp_path: Path) -> None:
    def installs(target: str) -> list[str]:
        plan = subprocess.run(
            ["make", "-n", target, f"VENV={tmp_path / 'venv'}", "PYTHON=python3"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [word for line in plan.splitlines() if "pip install" in line for word in line.split()]

    assert "requirements.lock" in installs("run")
    assert "requirements-dev.lock" not in installs("run")
    assert {"requirements.lock", "requirements-dev.lock"} <= set(installs("test"))
