"""Pipeline spec parsing and validation: every problem listed, with its field."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import ValidationFailed
from modelyard.pipelines.spec import RAW, compatible, load_document, parse_duration
from modelyard.pipelines.spec.parse import parse_spec


def doc(**stages: Any) -> dict[str, Any]:
    return {"name": "imgs", "raw": "image", "stages": stages}


PALETTE = {"type": "inferrer", "inferrer": "palette"}


def problems(document: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as info:
        parse_spec(document)
    return info.value.errors


def test_valid_spec_is_ordered_topologically_and_defaults_inputs_to_raw() -> None:
    spec = parse_spec(
        doc(
            d={"type": "python", "callable": "m:f", "inputs": ["b", "c"]},
            b={"type": "python", "callable": "m:f", "inputs": ["a"]},
            c={"type": "python", "callable": "m:f", "inputs": ["a"]},
            a=PALETTE,
        )
    )
    assert list(spec.stages) == ["a", "b", "c", "d"]
    assert spec.stages["a"].inputs == (RAW,)
    assert spec.stages["a"].produces == "json"


def test_list_form_of_stages_is_accepted() -> None:
    spec = parse_spec({"name": "p", "stages": [{"name": "pal", **PALETTE}]})
    assert list(spec.stages) == ["pal"]
    assert spec.raw_type == "bytes"


@pytest.mark.parametrize(
    ("stages", "field", "fragment"),
    [
        ({"a": {"type": "quantum"}}, "stages.a.type", "unknown stage type 'quantum'"),
        ({"a": {**PALETTE, "inputs": ["nope"]}}, "stages.a.inputs[0]", "'nope' is not a stage"),
        ({"a": {"type": "inferrer", "inferrer": "sharpness"}}, "stages.a.inferrer", "unknown inferrer"),
        ({"a": {**PALETTE, "colour": 1}}, "stages.a.colour", "unknown field"),
        ({"a": {**PALETTE, "params": {"top_k": 0}}}, "stages.a.params.top_k", "1..100"),
        ({"a": {**PALETTE, "concurrency": 0}}, "stages.a.concurrency", "1..256"),
        ({"a": {**PALETTE, "retry": {"max_attempts": 99}}}, "stages.a.retry.max_attempts", "1..20"),
        ({"a": {"type": "python", "callable": "not a path"}}, "stages.a.callable", "import path"),
        ({"a": {"type": "command", "command": []}}, "stages.a.command", "non-empty"),
        ({"a": {"type": "model"}}, "stages.a.model", "registered model"),
        (
            {"a": {"type": "model", "model": "m", "preprocess": {"resize": -3, "layout": "CHW"}}},
            "stages.a.preprocess.resize",
            "side length",
        ),
        ({"Bad Name": PALETTE}, "stages.Bad Name", "stage name"),
        ({"raw": PALETTE}, "stages.raw", "not raw"),
        (
            {"a": {"type": "inferrer", "inferrer": "features", "params": {}}},
            "stages.a.params.model",
            "registered image model",
        ),
        (
            {
                "a": {"type": "python", "callable": "m:f", "output_type": "json"},
                "b": {**PALETTE, "inputs": ["a"]},
            },
            "stages.b.inputs[0]",
            "reads image but a produces json",
        ),
        (
            {"a": {"type": "model", "model": "m"}},
            "stages.a.inputs[0]",
            "reads array but raw produces image",
        ),
        ({"a": {"type": "python", "callable": "m:f", "inputs": ["a"]}}, "stages.a.inputs[0]", "reads itself"),
    ],
)
def test_each_problem_names_its_field(stages: dict[str, Any], field: str, fragment: str) -> None:
    found = problems(doc(**stages))
    assert any(p["field"] == field and fragment in p["detail"] for p in found), found


def test_cycle_is_reported_with_its_path() -> None:
    found = problems(
        doc(
            a={"type": "python", "callable": "m:f", "inputs": ["c"]},
            b={"type": "python", "callable": "m:f", "inputs": ["a"]},
            c={"type": "python", "callable": "m:f", "inputs": ["b"]},
        )
    )
    cycles = [p for p in found if "cycle" in p["detail"]]
    assert len(cycles) == 1
    assert "a -> b -> c -> a" in cycles[0]["detail"] or "b -> c -> a -> b" in cycles[0]["detail"]


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        {
            "name": "Bad!",
            "extra": 1,
            "archive_after": "soon",
            "stages": {
                "a": {"type": "quantum"},
                "b": {**PALETTE, "inputs": ["missing"]},
                "c": {"type": "python", "callable": "m:f", "output_type": "json"},
                "d": {**PALETTE, "inputs": ["c"]},
            },
        }
    )
    fields = {p["field"] for p in found}
    assert {
        "name",
        "extra",
        "archive_after",
        "stages.a.type",
        "stages.b.inputs[0]",
        "stages.d.inputs[0]",
    } <= fields


def test_input_from_an_invalid_stage_is_not_reported_as_missing() -> None:
    found = problems(doc(a={"type": "quantum"}, b={**PALETTE, "inputs": ["a"]}))
    assert [p["field"] for p in found] == ["stages.a.type"]


def test_empty_and_non_mapping_documents_are_refused() -> None:
    assert problems(None)[0]["field"] == ""
    assert problems({"name": "p"})[0]["field"] == "stages"
    assert problems({"name": "p", "stages": {}})[0]["field"] == "stages"


def test_yaml_syntax_error_is_a_validation_failure_with_the_line() -> None:
    with pytest.raises(ValidationFailed) as info:
        load_document("name: p\nstages: [\n  - a: {\n")
    assert "line" in info.value.detail


def test_json_is_read_too() -> None:
    assert load_document('{"name": "p", "stages": {}}') == {"name": "p", "stages": {}}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("never", None),
        (60, 60),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("1.5d", 129600),
    ],
)
def test_durations(value: Any, seconds: int | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5m", 0, True, "5y"])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("produced", "accepted", "ok"),
    [
        ("image", "image", True),
        ("bytes", "image", True),
        ("image", "bytes", True),
        ("json", "image", False),
        ("array", "json", False),
        ("json", "any", True),
        ("any", "array", True),
    ],
)
def test_type_compatibility(produced: str, accepted: str, ok: bool) -> None:
    assert compatible(produced, accepted) is ok


def test_closure_pulls_in_dependencies_and_downstream_follows_dependents() -> None:
    spec = parse_spec(
        doc(
            a=PALETTE,
            b={"type": "python", "callable": "m:f", "inputs": ["a"]},
            c={"type": "python", "callable": "m:f", "inputs": ["b"]},
            x={"type": "inferrer", "inferrer": "phash"},
        )
    )
    assert spec.closure(["c"]) == [RAW, "a", "b", "c"]
    assert spec.closure(None) == [RAW, "a", "x", "b", "c"]
    assert spec.downstream("a") == ["a", "b", "c"]
    assert spec.downstream(RAW) == [RAW, "a", "x", "b", "c"]


def test_fingerprint_changes_with_version_and_params_only() -> None:
    base = parse_spec(doc(a=PALETTE)).stages["a"]
    same = parse_spec(doc(a={**PALETTE, "concurrency": 9})).stages["a"]
    bumped = parse_spec(doc(a={**PALETTE, "version": 2})).stages["a"]
    tuned = parse_spec(doc(a={**PALETTE, "params": {"top_k": 3}})).stages["a"]
    assert base.fingerprint() == same.fingerprint()
    assert len({base.fingerprint(), bumped.fingerprint(), tuned.fingerprint()}) == 3


def test_limits_inherit_pipeline_defaults() -> None:
    spec = parse_spec(
        {
            "name": "p",
            "defaults": {"concurrency": 2, "retry": {"max_attempts": 5}},
            "raw": {"type": "image", "batch_size": 8},
            "stages": {"a": {**PALETTE, "batch_size": 3}},
        }
    )
    assert spec.stages["a"].limits.concurrency == 2
    assert spec.stages["a"].limits.batch_size == 3
    assert spec.stages["a"].limits.retry.max_attempts == 5
    assert spec.raw_limits.batch_size == 8


@pytest.mark.parametrize(
    ("stage", "field", "detail"),
    [
        (
            {"type": "python", "callable": "nope"},
            "stages.s.callable",
            "must be an import path like package.module:function",
        ),
        (
            {"type": "python", "callable": "m:f", "input_type": "video"},
            "stages.s.input_type",
            "unknown data type 'video' (one of bytes, image, json, array, table, any)",
        ),
        (
            {"type": "command", "command": [""]},
            "stages.s.command",
            "must be a non-empty list of arguments (or one string)",
        ),
        ({"type": "model", "model": ""}, "stages.s.model", "the name of a registered model is required"),
        (
            {"type": "model", "model": "m", "model_version": 0},
            "stages.s.model_version",
            "must be a version number or latest",
        ),
        ({"type": "model", "model": "m", "input": 1}, "stages.s.input", "must be the name of a model input"),
        (
            {"type": "model", "model": "m", "postprocess": {"top_k": 0}},
            "stages.s.postprocess.top_k",
            "must be an integer 1..1000",
        ),
        (
            {"type": "model", "model": "m", "postprocess": {"mode": 1}},
            "stages.s.postprocess.mode",
            "unknown field (known: l2_normalise, labels, softmax, top_k)",
        ),
        (
            {"type": "model", "model": "m", "postprocess": []},
            "stages.s.postprocess",
            "must be a mapping of l2_normalise, labels, softmax, top_k",
        ),
        (
            {"type": "model", "model": "m", "preprocess": {"zoom": 2}},
            "stages.s.preprocess.zoom",
            "unknown preprocess field (known: layout, mean, mode, resize, scale, std)",
        ),
        (
            {"type": "inferrer", "inferrer": "palette", "params": {"top_k": 101}},
            "stages.s.params.top_k",
            "must be an integer 1..100",
        ),
        (
            {"type": "inferrer", "inferrer": "phash", "params": {"x": 1}},
            "stages.s.params.x",
            "unknown parameter of phash (known: none)",
        ),
        (
            {"type": "inferrer", "inferrer": "features", "params": {}},
            "stages.s.params.model",
            "the name of a registered image model is required",
        ),
        (
            {"type": "command", "command": "cat", "callable": "m:f"},
            "stages.s.callable",
            "unknown field for a command stage (known: batch_size, cache, command, concurrency, input_type, inputs, output_type, params, retry, timeout_seconds, type, version)",
        ),
    ],
)
def test_each_kind_reports_its_fields_problems_with_exact_paths_and_messages(
    stage: dict[str, Any], field: str, detail: str
) -> None:
    found = problems({"name": "p", "stages": {"s": stage}})
    assert {"field": field, "detail": detail} in found, found


@pytest.mark.parametrize(
    ("raw", "inferrer", "detail"),
    [
        ("image", "array_stats", "stage s reads array but raw produces image"),
        ("json", "array_stats", "stage s reads array but raw produces json"),
        ("array", "palette", "stage s reads image but raw produces array"),
        ("json", "phash", "stage s reads image but raw produces json"),
        ("array", "table_stats", "stage s reads table but raw produces array"),
    ],
)
def test_raw_data_a_stage_does_not_accept_is_refused_naming_the_stage_and_both_types(
    raw: str, inferrer: str, detail: str
) -> None:
    found = problems({"name": "p", "raw": raw, "stages": {"s": {"type": "inferrer", "inferrer": inferrer}}})
    assert found == [{"field": "stages.s.inputs[0]", "detail": detail}]


@pytest.mark.parametrize(
    ("raw", "inferrer", "reads"),
    [
        ("array", "array_stats", "array"),
        ("any", "array_stats", "array"),
        ("bytes", "palette", "image"),
        ("image", "phash", "image"),
        ("table", "table_stats", "table"),
    ],
)
def test_raw_data_a_stage_accepts_passes(raw: str, inferrer: str, reads: str) -> None:
    spec = parse_spec({"name": "p", "raw": raw, "stages": {"s": {"type": "inferrer", "inferrer": inferrer}}})
    assert spec.stages["s"].accepts == (reads,)


def _refusal(text: str, **kwargs: Any) -> str:
    with pytest.raises(ValidationFailed) as info:
        load_document(text, **kwargs)
    return info.value.errors[0]["detail"]


@pytest.mark.parametrize("depth", [33, 500, 5000])
def test_yaml_nested_deeper_than_the_limit_is_refused_not_recursed(depth: int) -> None:
    flow = "name: p\nstages: " + "[" * depth + "]" * depth
    block = "".join(f"{'  ' * i}k:\n" for i in range(depth)) + "  " * depth + "v: 1\n"
    assert "nested more than 32 levels deep" in _refusal(flow)
    assert "nested more than 32 levels deep" in _refusal(block)


@pytest.mark.parametrize("depth", [33, 1000])
def test_json_nested_deeper_than_the_limit_is_refused(depth: int) -> None:
    text = '{"name": "p", "stages": ' + "[" * depth + "]" * depth + "}"
    detail = _refusal(text, json=True)
    assert "nested more than 32 levels deep" in detail or "not valid JSON" in detail


def test_nesting_up_to_the_limit_is_read() -> None:
    assert load_document("a: " + "[" * 31 + "]" * 31) is not None


def test_alias_expansion_counts_every_repeated_value() -> None:
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "more than 10000 values" in _refusal("\n".join(lines))


def test_document_with_too_many_values_is_refused() -> None:
    assert "more than 100 values" in _refusal("[" + ", ".join(["1"] * 200) + "]", max_nodes=100)
    assert "more than 100 values" in _refusal("[" + ", ".join(["1"] * 200) + "]", json=True, max_nodes=100)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e400d", 1e300])
def test_duration_that_is_not_finite_or_absurdly_long_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_duration(value)


def test_infinite_archive_after_is_a_problem_not_a_crash() -> None:
    found = problems({**doc(p=PALETTE), "archive_after": load_document("x: .inf")["x"]})
    assert [p["field"] for p in found] == ["archive_after"]


@pytest.mark.parametrize(
    ("text", "as_json"),
    [
        ('name: p\ndescription: "a\\0b"\n', False),
        ('{"name": "p", "description": "a\\u0000b"}', True),
        ('{"name": "p", "stages": {"a\\u0000": {}}}', True),
    ],
)
def test_spec_holding_a_nul_character_is_refused(text: str, as_json: bool) -> None:
    assert "NUL" in _refusal(text, json=as_json)
