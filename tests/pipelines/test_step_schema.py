"""Step config schemas as JSON Schema: what is published, what is checked, and at what cost."""
import time

import pytest
from jsonschema import Draft202012Validator

from pipelines.blueprints import expand_graph
from pipelines.steps import Field, StepType, get_step_type, step_type_names
from pipelines.steps.builtin import MAX_PROGRAM_CHARS
from pipelines.steps.http import MAX_URL_CHARS
from pipelines.value_types import VALUE_TYPES, fits, json_type, type_schema

# ------------------------------------------------------------------ the published schemas


@pytest.mark.parametrize("name", step_type_names())
def test_every_type_publishes_a_valid_draft_2020_12_schema(name):
    described = type(get_step_type(name)).describe()
    schema = described["config_schema"]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(described) == {"name", "description", "side_effect_free", "config_schema"}


def test_published_schema_is_a_copy():
    schema = get_step_type("http").config_json_schema()
    schema["properties"].clear()
    assert get_step_type("http").config_json_schema()["properties"]


@pytest.mark.parametrize(
    "type_name, config, valid",
    [
        pytest.param("http", {"url": "https://x.test", "method": "POST", "headers": {"A": "b"},
                              "json": {"k": [1]}, "timeout_s": 2.5}, True, id="http-full"),
        pytest.param("http", {"url": "https://x.test", "method": None}, True, id="null-is-default"),
        pytest.param("http", {"url": "https://x.test", "headers": {"A": 1}}, False, id="header-int"),
        pytest.param("delay", {"seconds": 3601}, False, id="above-maximum"),
        pytest.param("fail", {"fail_attempts": 2}, True, id="integer"),
        pytest.param("log", {"message": "m", "extra": 1}, False, id="unknown-key"),
    ],
)
def test_published_schema_judges_rendered_configs_as_the_validator_does(type_name, config, valid):
    """A client holding only the published schema agrees with the server on rendered configs."""
    step = get_step_type(type_name)
    published = Draft202012Validator(step.config_json_schema())
    assert published.is_valid(config) is valid
    assert (step.validate_config(config) == []) is valid


def test_field_as_json_schema():
    assert Field("integer", required=True, minimum=0, maximum=9).json_schema() == {
        "type": "integer", "minimum": 0, "maximum": 9}
    assert Field("string", default="a", choices=("a", "b"), description="d").json_schema() == {
        "type": ["string", "null"], "enum": ["a", "b", None], "default": "a", "description": "d"}
    assert Field("any").json_schema() == {}
    assert Field("object", schema={"additionalProperties": {"type": "string"}}).json_schema() == {
        "type": ["object", "null"], "additionalProperties": {"type": "string"}}


# ------------------------------------------------------------------ checks and their issues


@pytest.mark.parametrize(
    "type_name, config, expected",
    [
        pytest.param("fail", {"fail_attempts": 2.0}, [("config.fail_attempts", "invalid_config")],
                     id="float-is-not-an-integer"),
        pytest.param("delay", {"seconds": float("nan")}, [("config.seconds", "invalid_config")],
                     id="nan-is-not-a-number"),
        pytest.param("fail", {"retryable": 1}, [("config.retryable", "invalid_config")], id="int-is-not-bool"),
        pytest.param("http", {"url": "https://x.test", "headers": {"A": "b", "B": [1]}},
                     [("config.headers.B", "invalid_config")], id="nested-path"),
        pytest.param("http", {"url": "https://x.test", "headers": {"A": "{{ .params.token }}"}}, [],
                     id="nested-template"),
        pytest.param("http", {"zeta": 1, "timeout_s": "x", "alpha": 2, "method": "TRACE"},
                     [("config.alpha", "invalid_config"), ("config.zeta", "invalid_config"),
                      ("config.url", "missing_config"), ("config.method", "invalid_config"),
                      ("config.timeout_s", "invalid_config")], id="unknown-first-then-declared-order"),
        pytest.param("delay", {"seconds": "{{ .params.n }}"}, [], id="template-stands-for-a-number"),
        pytest.param("delay", {"seconds": None}, [("config.seconds", "invalid_config")],
                     id="required-null"),
    ],
)
def test_issues_keep_paths_and_codes(type_name, config, expected):
    assert [(i.path, i.code) for i in get_step_type(type_name).validate_config(config)] == expected


def test_messages_name_the_key_and_the_expected_type():
    (issue,) = get_step_type("fail").validate_config({"fail_attempts": "two"})
    assert issue.message == "config 'fail_attempts' must be an integer, got string"
    (issue,) = get_step_type("http").validate_config({})
    assert issue.message == "step type 'http' requires config 'url' (string)"


def test_the_remembered_verdict_is_the_computed_one_and_cannot_be_changed_by_a_caller():
    step = get_step_type("log")
    first = step.validate_config({"level": "loud"}, "nodes[0].config")
    first.clear()
    again = step.validate_config({"level": "loud"}, "nodes[0].config")
    assert [(i.path, i.code) for i in again] == [("nodes[0].config.message", "missing_config"),
                                                 ("nodes[0].config.level", "invalid_config")]
    # The path is part of what is remembered: another node's issues carry its own path.
    assert {i.path for i in step.validate_config({"level": "loud"}, "nodes[5].config")} == {
        "nodes[5].config.message", "nodes[5].config.level"}


def test_a_step_type_defined_later_gets_its_own_validator():
    class Narrow(StepType):
        name = "test-narrow"
        config_schema = {"n": Field("integer", required=True)}

    class Wide(Narrow):
        config_schema = {"n": Field("any", required=True)}

    assert Narrow().validate_config({"n": "x"}) != []
    assert Wide().validate_config({"n": "x"}) == []


# ------------------------------------------------------------------ hostile configs


def _nested(depth):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "type_name, config, path_start, code",
    [
        pytest.param("http", {"url": "https://x.test", "json": _nested(100_000)}, "config.json[0]",
                     "limit_exceeded", id="deep-body"),
        pytest.param("http", {"url": "https://x.test", "headers": {"A": _nested(5_000)}},
                     "config.headers.A[0]", "limit_exceeded", id="deep-header"),
        pytest.param("noop", {f"k{i}": i for i in range(250_000)}, "config", "limit_exceeded",
                     id="many-keys"),
        pytest.param("http", {"url": "https://x.test/" + "a" * 5_000_000}, "config.url",
                     "invalid_config", id="huge-url"),
        pytest.param("jq", {"program": ". + " + "1 + " * 100_000 + "1"}, "config.program",
                     "invalid_config", id="huge-jq-program"),
        pytest.param("condition", {"expression": "(" * 100_000}, "config.expression", "invalid_config",
                     id="huge-condition"),
    ],
)
def test_hostile_configs_get_one_clear_issue_quickly(type_name, config, path_start, code):
    started = time.monotonic()
    issues = get_step_type(type_name).validate_config(config)
    assert time.monotonic() - started < 5
    assert [i.code for i in issues] == [code]
    assert issues[0].path.startswith(path_start)
    assert len(issues[0].message) < 300


def test_limits_are_stated():
    (issue,) = get_step_type("jq").validate_config({"program": "." * (MAX_PROGRAM_CHARS + 1)})
    assert str(MAX_PROGRAM_CHARS) in issue.message
    (issue,) = get_step_type("http").validate_config({"url": "https://x.test/" + "a" * MAX_URL_CHARS})
    assert str(MAX_URL_CHARS) in issue.message


# ------------------------------------------------------------------ one vocabulary of value types


@pytest.mark.parametrize(
    "type_name, value, expected",
    [
        ("string", "a", True), ("string", 1, False),
        ("number", 1, True), ("number", 1.5, True), ("number", True, False), ("number", float("inf"), False),
        ("integer", 1, True), ("integer", 1.0, False), ("integer", False, False),
        ("boolean", False, True), ("boolean", 0, False),
        ("object", {}, True), ("object", [], False),
        ("array", [], True), ("array", {}, False),
        ("any", None, True),
    ],
)
def test_fits(type_name, value, expected):
    assert fits(type_name, value) is expected


def test_vocabulary():
    assert VALUE_TYPES == ("string", "number", "integer", "boolean", "object", "array", "any")
    assert type_schema("any") == {} and type_schema("integer") == {"type": "integer"}
    assert [json_type(v) for v in (None, True, 1, 1.5, "s", [], {})] == [
        "null", "boolean", "integer", "number", "string", "array", "object"]
    with pytest.raises(ValueError):
        fits("str", "a")


def test_template_param_schema_in_json_schema_form_keeps_its_types():
    templates = {"wait": {"type": "delay", "config": {"seconds": "{{ .params.s }}"},
                          "param_schema": {"type": "object", "required": ["s"],
                                           "properties": {"s": {"type": "number"}}}}}
    doc = {"nodes": [{"id": "w", "template": "wait", "params": {"s": "ten"}}], "edges": []}
    issues = expand_graph(doc, blueprints={}, templates=templates).issues
    assert [(i.code, i.path) for i in issues] == [("invalid_param", "nodes[0].params.s")]
