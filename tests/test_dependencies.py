"""Every third-party package the code imports is declared in pyproject.toml, so an install from the
project's own metadata (not the lock file) has everything it imports; only ``modelyard.analysis`` imports
the ``analysis`` extra; and the three lock files split what the server needs (``make run``) from the
analysis extra and from the test, lint and benchmark tools (``make test`` installs all three)."""

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


def _imported_top_levels() -> dict[str, list[Path]]:
    """Top-level module names imported anywhere (module level, functions, ``try`` blocks), each with
    the files that import it."""
    found: dict[str, list[Path]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                files = found.setdefault(name.partition(".")[0], [])
                if path not in files:
                    files.append(path)
    return found


def _owners(top: str) -> set[str]:
    """The distributions that provide top-level module ``top``."""
    return {_normal(d) for d in importlib.metadata.packages_distributions().get(top, [top])}


def _extra(name: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(Requirement(spec).name) for spec in project["optional-dependencies"][name]}


def test_every_imported_third_party_package_is_a_declared_dependency() -> None:
    declared = _declared()
    missing = []
    for top, paths in sorted(_imported_top_levels().items()):
        if top in sys.stdlib_module_names or top == "modelyard" or top == "__future__":
            continue
        owners = _owners(top)
        if not owners & declared:
            missing.append(f"{top} (from {sorted(owners)}, imported in {paths[0].relative_to(ROOT)})")
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"


def test_only_the_analysis_package_imports_the_analysis_extra() -> None:
    extra = _extra("analysis")
    assert {"scipy", "scikit-image", "scikit-learn", "distributed", "tifffile", "zarr"} <= extra
    outside = {
        top: [str(p.relative_to(SRC)) for p in paths if p.relative_to(SRC).parts[0] != "analysis"]
        for top, paths in _imported_top_levels().items()
        if _owners(top) & extra
    }
    assert {"scipy", "skimage", "sklearn", "distributed", "tifffile", "zarr"} <= set(outside)
    assert {top: files for top, files in outside.items() if files} == {}


def _pins(lock: str) -> dict[str, str]:
    """A lock file's ``name==version`` lines by normalised name."""
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        spec = line.partition("#")[0].strip()
        if spec:
            name, _, version = spec.partition("==")
            pins[_normal(name)] = version
    return pins


def _closure(specs: list[str], pinned: dict[str, str]) -> tuple[set[str], list[str]]:
    """Every distribution ``specs`` need, transitively (extras and markers as this interpreter evaluates
    them), and those of them ``pinned`` leaves unpinned."""
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


def test_runtime_lock_pins_what_the_server_needs_and_no_development_tool_or_extra() -> None:
    """The runtime lock is exactly what the dependencies need, with the build backend ``make run``
    installs modelyard with (no build isolation)."""
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    needed, unpinned = _closure(specs, runtime)
    assert unpinned == [], "runtime dependencies resolved without a pin in requirements.lock"
    assert set(runtime) == needed, "requirements.lock pins something the runtime does not need"
    assert not needed & {"scipy", "scikit-image", "scikit-learn", "dask", "distributed", "tifffile", "zarr"}
    assert _extra("dev") <= set(dev), "every development tool is pinned in requirements-dev.lock"


def test_analysis_lock_pins_what_the_extra_adds_to_the_runtime() -> None:
    runtime, analysis = _pins("requirements.lock"), _pins("requirements-analysis.lock")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = pyproject["project"]["optional-dependencies"]["analysis"]
    needed, unpinned = _closure(specs, runtime | analysis)
    assert unpinned == [], "the analysis extra resolves without a pin in the runtime and analysis locks"
    assert set(analysis) == needed - set(runtime), (
        "requirements-analysis.lock pins what the extra does not add"
    )


def test_the_three_lock_files_pin_everything_make_test_installs_once() -> None:
    locks = [
        _pins(name) for name in ("requirements.lock", "requirements-analysis.lock", "requirements-dev.lock")
    ]
    pinned = {name: version for lock in locks for name, version in lock.items()}
    assert sum(map(len, locks)) == len(pinned), "a package is pinned in two lock files"
    _, unpinned = _closure(sorted(_extra("dev") | _extra("analysis") | _extra("ann")), pinned)
    assert unpinned == [], "make test would resolve these without a pin"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is what runs the two commands")
def test_make_run_installs_only_the_runtime_lock_and_make_test_all_three(tmp_path: Path) -> None:
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
    assert not {"requirements-analysis.lock", "requirements-dev.lock"} & set(installs("run"))
    assert {"requirements.lock", "requirements-analysis.lock"} <= set(installs("install-analysis"))
    assert "requirements-dev.lock" not in installs("install-analysis")
    locks = {"requirements.lock", "requirements-analysis.lock", "requirements-dev.lock"}
    assert locks <= set(installs("test"))
