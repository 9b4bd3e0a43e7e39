"""Guards of the code's shape (DESIGN.md): dependencies point one way, nothing runs at import,
every route is documented."""

from __future__ import annotations

import ast
from pathlib import Path

from fastapi.testclient import TestClient

SRC = Path(__file__).parents[1] / "src" / "modelyard"
PURE = ["service.py", "v2.py", "rest.py", "runtime.py", "batching.py", "models.py", "schemas.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_and_codecs_do_not_import_web_frameworks() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name in PURE and any(m.split(".")[0] in {"fastapi", "starlette"} for m in _imports(p))
    ]
    assert offenders == []


def test_nothing_imports_app_but_the_cli() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "modelyard.app" in _imports(p) and p.name != "app.py" and p.parent.name != "cli"
    ]
    assert offenders == []


def test_every_route_has_a_description(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    undocumented = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if not op.get("description")
    ]
    assert undocumented == []
