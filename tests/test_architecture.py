"""Guards of the code's shape (DESIGN.md): dependencies point one way, nothing runs at import,
every route is documented."""

from __future__ import annotations

import ast
import re
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
        if "modelyard.app" in _imports(p) and p.name not in {"cli.py", "app.py"}
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


def _modules(*exempt: str) -> list[Path]:
    return [
        p
        for p in SRC.rglob("*.py")
        if not any(str(p.relative_to(SRC)).startswith(e) for e in ("migrations/", *exempt))
    ]


def _docstrings(tree: ast.AST) -> set[int]:
    """Ids of the string constants that are docstrings (they may name a dialect: they explain)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _dialect_mentions(path: Path, root: Path = SRC) -> list[str]:
    """Names and strings in code that decide by dialect: ``is_sqlite``, ``skip_locked``, a dialect name
    or a URL scheme of one (field descriptions and docstrings aside)."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    described = {
        id(k.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        for k in n.keywords
        if k.arg == "description"
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute | ast.keyword):
            name = (
                node.id
                if isinstance(node, ast.Name)
                else node.attr
                if isinstance(node, ast.Attribute)
                else node.arg
            )
            if name in {"is_sqlite", "skip_locked"}:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docs or id(node) in described:
                continue
            if re.match(r"(sqlite|postgresql)(\+\w+)?(:|$)", node.value.lower()):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def test_only_db_knows_sqlite_from_postgresql() -> None:
    offenders = [m for p in _modules("db.py", "db/") for m in _dialect_mentions(p)]
    assert offenders == []


def test_the_dialect_check_finds_a_dialect_decision(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        'def f(url, q, s):\n    return url.startswith("sqlite") or q.with_for_update(skip_locked=True)\n'
    )
    assert len(_dialect_mentions(module, tmp_path)) == 2


def test_only_durable_workers_calls_dbos_privately() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in _modules("durable/workers.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and isinstance(node.value, ast.Name)
        and node.value.id in {"DBOS", "dbos"}
    ]
    assert offenders == []


def test_dbos_tables_and_statuses_are_spelled_in_one_module_each() -> None:
    statuses = {"ENQUEUED", "DELAYED", "PENDING", "SUCCESS", "ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
    spelled: dict[str, set[str]] = {"workflow_status": set(), "status": set()}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "workflow_status" in node.value:
                    spelled["workflow_status"].add(str(p.relative_to(SRC)))
                if node.value in statuses:
                    spelled["status"].add(str(p.relative_to(SRC)))
    assert spelled == {"workflow_status": {"durable/system.py"}, "status": {"durable/status.py"}}


def test_the_context_has_no_untyped_bag_of_resources() -> None:
    from modelyard.context import AppContext

    assert "extras" not in AppContext.__dataclass_fields__
    offenders = [str(p.relative_to(SRC)) for p in _modules() if ".extras" in p.read_text()]
    assert offenders == []


def test_claims_are_made_only_by_the_durable_queue() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in _modules("durable/", "db.py")
        if "claimable(" in p.read_text() or "ClaimLoop)" in p.read_text()
    ]
    assert offenders == []
