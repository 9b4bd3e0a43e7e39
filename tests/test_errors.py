"""The one builder of error answers: problem+json, or the V2 protocol's ``{"error": ...}``."""

from __future__ import annotations

import ast
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from modelyard.errors import (
    INTERNAL_DETAIL,
    MAX_LISTED_PROBLEMS,
    PROBLEM_JSON,
    InvalidInput,
    ModelNotFound,
    Unauthorized,
    ValidationFailed,
    problem,
)
from modelyard.jobs.inputs import read_request

SRC = Path(__file__).resolve().parents[1] / "src" / "modelyard"


def test_domain_error_is_problem_json_with_its_field_and_instance() -> None:
    answer = problem(InvalidInput("bad shape", field="inputs.x"), "/api/v1/models/m/predict")
    assert (answer.status, answer.media_type, answer.headers) == (400, PROBLEM_JSON, {})
    assert orjson.loads(answer.encode()) == {
        "type": "https://modelyard.dev/problems/invalid-input",
        "title": InvalidInput.title,
        "status": 400,
        "detail": "bad shape",
        "code": "invalid-input",
        "field": "inputs.x",
        "instance": "/api/v1/models/m/predict",
    }


def test_unauthorized_says_how_to_authenticate_except_in_v2() -> None:
    assert problem(Unauthorized("no key")).headers == {"WWW-Authenticate": "Bearer"}
    assert problem(Unauthorized("no key"), v2=True).headers == {}


def test_v2_answers_carry_only_the_detail() -> None:
    answer = problem(ModelNotFound("iris"), "/v2/models/iris/infer", v2=True)
    assert (answer.status, answer.media_type) == (404, "application/json")
    assert answer.body == {"error": ModelNotFound("iris").detail}


@pytest.mark.parametrize("v2", [False, True])
def test_unexpected_errors_are_500_without_their_detail(v2: bool) -> None:
    answer = problem(RuntimeError("password=hunter2"), "/x", v2=v2)
    assert answer.status == 500
    assert b"hunter2" not in answer.encode() and INTERNAL_DETAIL in answer.encode().decode()


class _Point(BaseModel):
    x: int
    y: int


def _pydantic_errors(value: object) -> list[dict[str, object]]:
    with pytest.raises(ValidationError) as caught:
        _Point.model_validate(value)
    return [dict(e) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("value", "under", "fields"),
    [
        ({"x": 1}, "", ["y"]),
        ({"x": "a", "y": 1}, "params", ["params.x"]),
        ({}, "body", ["body.x", "body.y"]),
    ],
)
def test_pydantic_failures_name_each_field_under_their_place(
    value: object, under: str, fields: list[str]
) -> None:
    err = ValidationFailed.of_validation(_pydantic_errors(value), under=under)
    assert [e["field"] for e in err.errors] == fields
    assert (err.status, err.field) == (422, fields[0])
    assert err.detail.startswith(f"{fields[0]}: ")


def test_many_pydantic_failures_are_listed_up_to_the_cap_and_all_counted() -> None:
    found = [{"loc": ("rows", i), "msg": "bad"} for i in range(MAX_LISTED_PROBLEMS + 5)]
    err = ValidationFailed.of_validation(found, under="body")
    assert len(err.errors) == MAX_LISTED_PROBLEMS
    assert f"({MAX_LISTED_PROBLEMS + 5} problems, the first {MAX_LISTED_PROBLEMS} listed)" in err.detail


def test_a_job_request_with_many_bad_fields_lists_them_the_one_way() -> None:
    body = orjson.dumps({"model": "m", "rows": [[1]], "options": {"on_error": 7}, "uri": 5, "format": []})
    with pytest.raises(ValidationFailed) as caught:
        read_request(body)
    fields = [e["field"] for e in caught.value.errors]
    assert fields and all(f.startswith("body.") for f in fields)
    assert caught.value.field == fields[0]


def test_only_errors_py_turns_pydantic_errors_into_a_problem() -> None:
    """``ValidationFailed.of_validation`` is the one mapping: no other module reads an error's ``loc``."""
    readers = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                if node.slice.value == "loc":
                    readers.append(str(path.relative_to(SRC)))
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get":
                args = node.args
                if args and isinstance(args[0], ast.Constant) and args[0].value == "loc":
                    readers.append(str(path.relative_to(SRC)))
    assert sorted(set(readers)) == ["errors.py"], readers
