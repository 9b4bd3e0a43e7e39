"""Guards of the code's shape (DESIGN.md): dependencies point one way, nothing runs at import,
every route is documented, the server runs without the analysis extra."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from modelyard.extras import EXTRAS

SRC = Path(__file__).parents[1] / "src" / "modelyard"
PURE = ["service.py", "v2.py", "rest.py", "runtime.py", "batching.py", "models.py", "schemas.py"]
WEB = {"app.py", "bodies.py", "deps.py", "docs.py", "sse.py", "fastpath.py", "ws.py"}
"""Web-layer modules besides the routers (``*api.py``) and the CLI, which starts the server."""

# In a fresh interpreter, import the third-party libraries modelyard uses (except the web framework),
# then fork once per module: each child imports one module from a clean slate and reports whether
# FastAPI came with it. Forking keeps ~100 fresh imports to a few seconds.
_PROBE = """
import importlib, importlib.util, json, os, sys
modules, third_party = sys.argv[1:], set()
for name in modules:
    spec = importlib.util.find_spec(name)
    source = open(spec.origin).read()
    third_party |= {line.split()[1].split(".")[0] for line in source.splitlines()
                    if line.startswith(("import ", "from ")) and not line.split()[1].startswith(("modelyard", "."))}
for top in sorted(third_party - {"fastapi", "starlette", "__future__"}):
    try:
        importlib.import_module(top)
    except ImportError:
        pass
assert "fastapi" not in sys.modules, "a third-party library loads FastAPI"
loaded = {}
for name in modules:
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        importlib.import_module(name)  # a failure writes nothing, so it is not taken for clean
        os.write(write, b"fastapi" if "fastapi" in sys.modules else b"clean")
        os._exit(0)
    os.close(write)
    loaded[name] = os.read(read, 16).decode() or "import failed"
    os.close(read)
    os.wait()
print(json.dumps(loaded))
"""


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


def _non_web_modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in {"cli", "migrations", "web"} or path.name in WEB or path.stem.endswith("api"):
            continue
        parts = ["modelyard", *rel.with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_a_service_workflow_or_pure_module_leaves_fastapi_out() -> None:
    modules = _non_web_modules()
    assert "modelyard.pipelines.service" in modules and "modelyard.context" in modules
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    loaded = json.loads(probe.stdout)
    assert sorted(loaded) == sorted(modules)
    assert {name: what for name, what in loaded.items() if what != "clean"} == {}


# In a fresh interpreter, import modules one by one (then load every stage kind and every workflow module,
# as a server and a worker do) and report which step first brought in a package of the analysis extra.
_EXTRA_PROBE = """
import importlib, json, sys
extra = sys.argv[1].split(",")
brought = {}

def step(name, call):
    before = {m for m in extra if m in sys.modules}
    call()
    new = sorted({m for m in extra if m in sys.modules} - before)
    if new:
        brought[name] = new

for name in sys.argv[2:]:
    step(name, lambda: importlib.import_module(name))
from modelyard.durable import import_workflows
from modelyard.pipelines.spec.kinds import stage_kinds

step("every stage kind", stage_kinds)
step("every workflow module", import_workflows)
assert "tissue_segment" in stage_kinds() and "tissue_stats" in stage_kinds()
print(json.dumps(brought))
"""
ANALYSIS_WITHOUT_EXTRA = {"__init__", "errors", "images", "params", "render", "stages_images", "stages_stats"}
"""The modules of ``analysis`` a server imports: its stage kinds and what they check specs with."""


def _modules_without_extra() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "migrations" or (
            rel.parts[0] == "analysis" and path.stem not in ANALYSIS_WITHOUT_EXTRA
        ):
            continue
        parts = ["modelyard", *rel.with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_server_cli_and_workers_import_nothing_of_the_analysis_extra() -> None:
    modules = _modules_without_extra()
    assert {
        "modelyard.app",
        "modelyard.cli",
        "modelyard.durable.workers",
        "modelyard.analysis.stages_images",
    } <= set(modules)
    assert set(_non_web_modules()) - {
        m for m in _non_web_modules() if m.startswith("modelyard.analysis.")
    } <= set(modules)
    probe = subprocess.run(
        [sys.executable, "-c", _EXTRA_PROBE, ",".join(EXTRAS["analysis"]), *modules],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {}


def test_the_extra_probe_names_the_module_that_brings_a_package_in(tmp_path: Path) -> None:
    (tmp_path / "heavy_user.py").write_text("import json\nfrom scipy import sparse\n")
    probe = subprocess.run(
        [sys.executable, "-c", _EXTRA_PROBE, "scipy,skimage", "modelyard.app", "heavy_user"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {"heavy_user": ["scipy"]}


def test_registry_does_not_import_serving() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in (SRC / "registry").rglob("*.py")
        if any(m.startswith("modelyard.serving") for m in _imports(p))
    ]
    assert offenders == []
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelyard.registry.service, modelyard.registry.inspect; "
            "print(sorted(m for m in sys.modules if m.startswith('modelyard.serving')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


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
