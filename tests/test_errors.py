"""The one builder of error answers: problem+json, or the V2 protocol's ``{"error": ...}``."""

from __future__ import annotations

import orjson
import pytest

from modelyard.errors import (
    INTERNAL_DETAIL,
    PROBLEM_JSON,
    InvalidInput,
    ModelNotFound,
    Unauthorized,
    problem,
)


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
