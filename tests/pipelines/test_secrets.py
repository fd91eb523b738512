"""Secret references: finding, schema acceptance, resolution right before run, redaction."""

import copy

import pytest

from pipelines.errors import StepConfigError, StepFailed
from pipelines.secrets import (
    find_secret_refs,
    is_secret_ref,
    redact,
    resolve_secret_refs,
    secret_issues,
)
from pipelines.steps import (
    Field,
    StepContext,
    StepType,
    get_step_type,
    register_step_type,
    render_step_config,
    run_step,
    unregister_step_type,
)
from pipelines.validation import validate_graph

SECRETS = {"api-token": "s3cr3t-value", "user": "ada"}
CONTEXT = {"params": {"who": "ada", "ref": {"$secret": "api-token"}, "name": "api-token"},
           "steps": {}, "execution": {"id": "ex-1"}}


def ctx():
    return StepContext(execution_id="ex-1", node_id="n1", context=CONTEXT)


def ref(name):
    return {"$secret": name}


# ------------------------------------------------------------------ the module


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param(ref("a"), True, id="ref"),
        pytest.param({"$secret": ""}, False, id="empty-name"),
        pytest.param({"$secret": 1}, False, id="number-name"),
        pytest.param({"$secret": "a", "x": 1}, False, id="extra-key"),
        pytest.param("$secret", False, id="string"),
        pytest.param(None, False, id="none"),
    ],
)
def test_is_secret_ref(value, expected):
    assert is_secret_ref(value) is expected


def test_find_secret_refs_paths_in_document_order():
    value = {"url": "u", "headers": {"A": ref("a"), "B": "b"}, "json": [1, {"k": ref("b")}],
             "again": ref("a")}
    assert find_secret_refs(value, "nodes[0].config") == [
        ("nodes[0].config.headers.A", "a"), ("nodes[0].config.json[1].k", "b"),
        ("nodes[0].config.again", "a")]
    assert find_secret_refs("plain") == []


def test_resolve_secret_refs_returns_new_structure_and_never_mutates():
    value = {"h": {"A": ref("api-token")}, "l": [ref("user"), 2, {"x": None}], "n": 1}
    before = copy.deepcopy(value)
    out = resolve_secret_refs(value, SECRETS.__getitem__)
    assert out == {"h": {"A": "s3cr3t-value"}, "l": ["ada", 2, {"x": None}], "n": 1}
    assert value == before
    assert out["l"][2] is not value["l"][2]
    with pytest.raises(KeyError):
        resolve_secret_refs(ref("nope"), SECRETS.__getitem__)


def test_secret_issues_missing_and_malformed():
    value = {"a": ref("api-token"), "b": ref("gone"), "c": {"$secret": 5}}
    assert [(i.path, i.code) for i in secret_issues(value, "config", SECRETS)] == [
        ("config.c", "invalid_config"), ("config.b", "missing_secret")]


def test_redact_replaces_longest_first():
    value = {"m": "bad s3cr3t-value for ada", "l": ["ada"], "n": 3}
    assert redact(value, SECRETS) == {"m": "bad <secret:api-token> for <secret:user>",
                                      "l": ["<secret:user>"], "n": 3}


# ------------------------------------------------------------------ schemas accept references


@pytest.mark.parametrize(
    "type_name, config",
    [
        pytest.param("http", {"url": "https://x.test", "headers": {"Authorization": ref("t")}},
                     id="header"),
        pytest.param("http", {"url": ref("webhook")}, id="string-field"),
        pytest.param("http", {"url": "https://x.test", "json": {"k": [ref("t")]}},
                     id="inside-any"),
        pytest.param("log", {"message": ref("t")}, id="any-field"),
        pytest.param("python", {"callable": "echo", "kwargs": {"token": ref("t")}},
                     id="inside-object"),
    ],
)
def test_references_pass_where_text_is_accepted(type_name, config):
    assert get_step_type(type_name).validate_config(config) == []
    doc = {"nodes": [{"id": "a", "type": type_name, "config": config}]}
    assert validate_graph(doc).ok


@pytest.mark.parametrize(
    "type_name, config, path, fragment",
    [
        pytest.param("http", {"url": "https://x.test", "method": ref("m")}, "config.method",
                     "cannot be checked", id="choices"),
        pytest.param("http", {"url": "https://x.test", "timeout_s": ref("t")}, "config.timeout_s",
                     "stands for text", id="number"),
        pytest.param("http", {"url": "https://x.test", "headers": ref("h")}, "config.headers",
                     "stands for text", id="whole-object"),
        pytest.param("http", {"url": "https://x.test", "headers": {"A": {"$secret": 1}}},
                     "config.headers.A", "invalid_config", id="malformed-header"),
        pytest.param("http", {"url": "https://x.test", "json": {"k": {"$secret": "a", "b": 1}}},
                     "config.json.k", 'write {"$secret": "<name>"}', id="malformed-in-any"),
    ],
)
def test_references_are_refused_where_text_cannot_go(type_name, config, path, fragment):
    issues = get_step_type(type_name).validate_config(config)
    assert [i.path for i in issues] == [path]
    assert issues[0].code == "invalid_config"
    assert fragment in issues[0].message or fragment == issues[0].code


# ------------------------------------------------------------------ run_step


@pytest.fixture
def capture():
    seen = []

    @register_step_type
    class Capture(StepType):
        name = "test-capture"
        config_schema = {"token": Field("string"), "body": Field("any"), "who": Field("string")}

        def run(self, config, ctx):
            seen.append(config)
            if config.get("body") == "fail":
                raise StepFailed(f"rejected token {config['token']}", retryable=True,
                                 details={"token": config["token"], "n": 1})
            if config.get("body") == "crash":
                raise ValueError(f"bad header value {config['token']!r}")
            if config.get("body") == "plain-fail":
                raise StepFailed("nothing secret here", details={"n": 2})
            return {"ok": True}

    yield seen
    unregister_step_type("test-capture")


def test_render_step_config_keeps_references(capture):
    spec = {"type": "test-capture", "config": {"token": ref("api-token"), "who": "{{ .params.who }}"}}
    assert render_step_config(spec, ctx()) == {"token": ref("api-token"), "who": "ada"}
    assert render_step_config(spec, CONTEXT) == {"token": ref("api-token"), "who": "ada"}
    assert capture == []


def test_run_step_resolves_after_rendering_right_before_run(capture):
    config = {"token": ref("api-token"), "who": "{{ .params.who }}", "body": [ref("user")]}
    before = copy.deepcopy(config)
    asked = []

    def resolver(name):
        asked.append(name)
        return SECRETS[name]

    out = run_step({"type": "test-capture", "config": config}, ctx(), secret_resolver=resolver)
    assert out == {"ok": True}
    assert capture == [{"token": "s3cr3t-value", "who": "ada", "body": ["ada"]}]
    assert config == before
    assert asked == ["api-token", "user"]


def test_run_step_resolves_pre_rendered_config(capture):
    rendered = render_step_config({"type": "test-capture", "config": {"token": ref("user")}}, ctx())
    run_step({"type": "test-capture", "config": rendered}, ctx(), render_templates=False,
             secret_resolver=SECRETS.__getitem__)
    assert capture == [{"token": "ada"}]


def test_run_step_without_references_needs_no_resolver(capture):
    run_step({"type": "test-capture", "config": {"who": "x"}}, ctx())
    assert capture == [{"who": "x"}]


def test_run_step_refuses_references_without_resolver(capture):
    with pytest.raises(StepConfigError) as info:
        run_step({"type": "test-capture", "config": {"token": ref("api-token")}}, ctx())
    assert [(i.path, i.code) for i in info.value.issues] == [("config.token", "missing_secret")]
    assert capture == []


def test_unknown_secret_is_a_config_error(capture):
    with pytest.raises(StepConfigError) as info:
        run_step({"type": "test-capture", "config": {"token": ref("gone")}}, ctx(),
                 secret_resolver=SECRETS.__getitem__)
    assert [(i.path, i.code) for i in info.value.issues] == [("config.token", "missing_secret")]


@pytest.mark.parametrize(
    "template",
    [pytest.param("{{ .params.ref }}", id="rendered-reference"),
     pytest.param('{{ {"$secret": .params.name} }}', id="built-reference")],
)
def test_templates_cannot_produce_references(capture, template):
    spec = {"type": "test-capture", "config": {"body": template}}
    with pytest.raises(StepConfigError) as info:
        run_step(spec, ctx(), secret_resolver=SECRETS.__getitem__)
    assert [i.path for i in info.value.issues] == ["config.body"]
    assert capture == []


def test_templated_secret_name_is_refused(capture):
    spec = {"type": "test-capture", "config": {"body": {"$secret": "{{ .params.name }}"}}}
    with pytest.raises(StepConfigError):
        render_step_config(spec, ctx())


def test_failures_do_not_carry_secret_values(capture):
    spec = {"type": "test-capture", "config": {"token": ref("api-token"), "body": "fail"}}
    with pytest.raises(StepFailed) as info:
        run_step(spec, ctx(), secret_resolver=SECRETS.__getitem__)
    assert info.value.retryable
    assert info.value.message == "rejected token <secret:api-token>"
    assert info.value.details == {"token": "<secret:api-token>", "n": 1}

    spec["config"]["body"] = "crash"
    with pytest.raises(StepFailed) as info:
        run_step(spec, ctx(), secret_resolver=SECRETS.__getitem__)
    assert "s3cr3t" not in str(info.value) and "<secret:api-token>" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_failures_without_secret_values_pass_through_unchanged(capture):
    spec = {"type": "test-capture", "config": {"token": ref("api-token"), "body": "plain-fail"}}
    with pytest.raises(StepFailed) as info:
        run_step(spec, ctx(), secret_resolver=SECRETS.__getitem__)
    assert info.value.to_dict() == {"message": "nothing secret here", "retryable": False,
                                    "details": {"n": 2}}
