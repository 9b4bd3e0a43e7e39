"""The one way a command calls the server: refusals listed the way each problem locates itself, and no
command that builds its own client or catches the client's errors itself."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from modelyard.cli import common
from modelyard.client import ApiError

CLI = Path(common.__file__).parent


@pytest.mark.parametrize(
    ("problem", "line"),
    [
        ({"field": "stages.s.inputs[0]", "detail": "unknown stage"}, "  stages.s.inputs[0]: unknown stage"),
        ({"field": None, "detail": "not a mapping"}, "  (document): not a mapping"),
        ({"line": 7, "field": "title", "detail": "too long"}, "  line 7: title: too long"),
        ({"line": 3, "field": None, "detail": "not JSON"}, "  line 3: -: not JSON"),
        (
            {"path": "$.geometry.coordinates", "rule": "self-intersection", "detail": "at 0.5,0.5"},
            "  $.geometry.coordinates (self-intersection): at 0.5,0.5",
        ),
    ],
)
def test_a_problem_is_located_by_its_line_path_or_field(problem: dict[str, Any], line: str) -> None:
    assert common.problem_line(problem) == line


def test_a_refusal_lists_its_first_problems_and_counts_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    problems = [{"field": f"f[{i}]", "detail": "bad"} for i in range(common.LISTED + 3)]
    exit_ = common.fail(ApiError(422, {"code": "validation-failed", "detail": "no", "errors": problems}))
    assert exit_.exit_code == common.EXIT_REFUSED
    printed = capsys.readouterr().err.splitlines()
    assert printed[1] == "  f[0]: bad"  # brackets are text, not console markup
    assert printed[common.LISTED] == f"  f[{common.LISTED - 1}]: bad"
    assert printed[-1] == "  ... and 3 more"


def test_an_unreachable_server_is_its_own_exit_code() -> None:
    assert common.fail(httpx.ConnectError("refused")).exit_code == common.EXIT_UNREACHABLE


def test_a_call_to_no_server_exits_unreachable_with_the_timeout_asked() -> None:
    with pytest.raises(typer.Exit) as info:
        common.call("GET", "/api/v1/models", "http://127.0.0.1:9", None, timeout=2.0)
    assert info.value.exit_code == common.EXIT_UNREACHABLE


def test_only_common_makes_clients_and_handles_their_errors() -> None:
    offenders = []
    for path in sorted(CLI.glob("*.py")):
        if path.name == "common.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Client":
                offenders.append(f"{path.name}:{node.lineno}: Client(...)")
            if isinstance(node, ast.ExceptHandler) and "ApiError" in ast.unparse(node.type or ast.Name("")):
                offenders.append(f"{path.name}:{node.lineno}: except ApiError")
    assert offenders == []
