import pytest

from pipelines.errors import TemplateError
from pipelines.templating import (
    compile_expression,
    find_templates,
    render,
    split_template,
    template_issues,
)

CONTEXT = {
    "trigger": {"kind": "manual", "user": "ada"},
    "params": {"region": "us-east", "count": 3, "tags": ["a", "b"], "flag": False},
    "steps": {"fetch": {"output": {"status": 200, "body": {"items": [1, 2, 3]}, "token": "t0k"}}},
    "execution": {"id": "ex-1"},
}


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("{{ .params.count }}", 3, id="whole-number"),
        pytest.param("{{ .params.tags }}", ["a", "b"], id="whole-list"),
        pytest.param("{{ .params.flag }}", False, id="whole-false"),
        pytest.param("{{ .steps.fetch.output.body }}", {"items": [1, 2, 3]}, id="whole-object"),
        pytest.param("{{ .missing }}", None, id="whole-null"),
        pytest.param("{{ empty }}", None, id="whole-no-output"),
        pytest.param("{{ .params.tags[] }}", "a", id="whole-first-of-many"),
        pytest.param("{{.params.region}}", "us-east", id="no-spaces"),
        pytest.param("{{ {a: {b: 1}} }}", {"a": {"b": 1}}, id="braces-inside"),
        pytest.param('{{ "}}" }}', "}}", id="close-inside-string"),
    ],
)
def test_whole_value_template_keeps_json_type(value, expected):
    assert render(value, CONTEXT) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("region={{ .params.region }}", "region=us-east", id="string"),
        pytest.param("n={{ .params.count }}", "n=3", id="number"),
        pytest.param("tags={{ .params.tags }}", 'tags=["a","b"]', id="list-as-compact-json"),
        pytest.param("x={{ .missing }}", "x=null", id="null-as-json"),
        pytest.param("{{ .trigger.user }}@{{ .execution.id }}", "ada@ex-1", id="two-templates"),
        pytest.param(" {{ .params.count }}", " 3", id="leading-space-is-text"),
        pytest.param("Bearer {{ .steps.fetch.output.token }}", "Bearer t0k", id="header"),
        pytest.param("no templates", "no templates", id="plain"),
    ],
)
def test_interpolation(value, expected):
    assert render(value, CONTEXT) == expected


def test_render_recurses_and_does_not_mutate():
    config = {"url": "https://x.test/{{ .params.region }}",
              "json": {"n": "{{ .params.count }}", "list": ["{{ .trigger.kind }}", 1, None]},
              "secret": {"$secret": "api-key"}}
    before = repr(config)
    assert render(config, CONTEXT) == {
        "url": "https://x.test/us-east",
        "json": {"n": 3, "list": ["manual", 1, None]},
        "secret": {"$secret": "api-key"},
    }
    assert repr(config) == before


@pytest.mark.parametrize(
    "value, path, fragment",
    [
        pytest.param({"a": {"b": "{{ .params.region + 1 }}"}}, "config.a.b", "cannot be added",
                     id="runtime-error"),
        pytest.param({"h": ["ok", "{{ error(\"boom\") }}"]}, "config.h[1]", "boom",
                     id="error-in-list"),
        pytest.param({"x": "{{ .a[ }}"}, "config.x", "invalid jq", id="compile-error"),
        pytest.param({"x": "{{ .a "}, "config.x", "unterminated", id="unterminated"),
        pytest.param({"x": "{{ [.a }} and {{ .b }}"}, "config.x", "invalid jq",
                     id="unbalanced-brackets-are-a-jq-error"),
        pytest.param({"x": "{{ }}"}, "config.x", "empty jq expression", id="empty"),
    ],
)
def test_render_errors_carry_path(value, path, fragment):
    with pytest.raises(TemplateError) as info:
        render(value, CONTEXT)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert isinstance(info.value.expression, str)


def test_context_must_be_json_safe():
    with pytest.raises(TemplateError, match="not JSON-safe"):
        render("{{ .x }}", {"x": object()})


def test_find_templates_paths():
    config = {"url": "https://{{ .a }}/{{ .b }}", "headers": {"X": "{{ .c }}"},
              "list": [1, "{{ .d }}"], "plain": "text"}
    assert find_templates(config) == [
        ("config.url", ".a"), ("config.url", ".b"), ("config.headers.X", ".c"),
        ("config.list[1]", ".d"),
    ]
    assert find_templates("{{ .z }}", "nodes[0].config.x") == [("nodes[0].config.x", ".z")]


def test_template_issues_never_raise():
    issues = template_issues({"a": "{{ .x | }}", "b": "{{ .y", "c": "{{ .ok }}"},
                             "nodes[1].config")
    assert [(i.path, i.code) for i in issues] == [("nodes[1].config.a", "invalid_jq"),
                                                  ("nodes[1].config.b", "invalid_jq")]


def test_split_template():
    assert split_template("a {{ .x }} b") == (("text", "a "), ("expr", ".x"), ("text", " b"))


def test_compile_is_cached():
    assert compile_expression(".params.count") is compile_expression(".params.count")
    with pytest.raises(TemplateError) as info:
        compile_expression(".a[")
    assert info.value.expression == ".a["
