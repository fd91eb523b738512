import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.egress import EgressPolicy
from pipelines.errors import PipelineError, StepConfigError, StepFailed, TemplateError
from pipelines.steps import (
    Field,
    StepContext,
    StepSpec,
    StepType,
    callable_names,
    get_step_type,
    register_callable,
    register_step_type,
    run_step,
    step_type_names,
    unregister_step_type,
)
from pipelines.steps.python import unregister_callable

CONTEXT = {
    "trigger": {"kind": "manual"},
    "params": {"n": 2, "who": "ada"},
    "steps": {"a": {"output": {"items": [1, 2, 3]}}},
    "execution": {"id": "ex-1"},
}


def ctx(**overrides):
    base = dict(execution_id="ex-1", node_id="n1", attempt=1, context=CONTEXT)
    base.update(overrides)
    return StepContext(**base)


def run(type_name, config=None, **ctx_overrides):
    return run_step(StepSpec(type_name, config or {}), ctx(**ctx_overrides))


# ------------------------------------------------------------------ registry


def test_builtins_registered():
    assert set(step_type_names()) >= {"noop", "log", "python", "http", "jq", "condition",
                                      "delay", "fail"}
    assert get_step_type("http").name == "http"


def test_unknown_type_names_known_ones():
    with pytest.raises(PipelineError) as info:
        get_step_type("teleport")
    assert "teleport" in str(info.value) and "noop" in str(info.value)
    assert not isinstance(info.value, KeyError)


def test_register_custom_type_and_conflicts():
    @register_step_type
    class Upper(StepType):
        name = "test-upper"
        config_schema = {"text": Field("string", required=True)}

        def run(self, config, ctx):
            return {"text": config["text"].upper()}

    try:
        assert run("test-upper", {"text": "{{ .params.who }}"}) == {"text": "ADA"}

        class Other(StepType):
            name = "test-upper"

        with pytest.raises(PipelineError, match="already registered"):
            register_step_type(Other)
    finally:
        unregister_step_type("test-upper")
    with pytest.raises(PipelineError, match="no name"):
        register_step_type(type("Nameless", (StepType,), {}))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"type": "noop", "config": {}}, id="noop"),
        pytest.param({"type": "http", "config": {"url": "{{ .params.u }}", "headers": {"A": "b"}}},
                     id="http-templated"),
    ],
)
def test_step_spec_round_trips(data):
    spec = StepSpec.from_dict(data)
    assert spec.to_dict() == data
    assert StepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("data", [None, {"config": {}}, {"type": "noop", "config": [1]}],
                         ids=["none", "no-type", "config-list"])
def test_step_spec_rejects_bad_dicts(data):
    with pytest.raises(PipelineError):
        StepSpec.from_dict(data)


def test_field_rejects_unknown_type():
    with pytest.raises(ValueError):
        Field("str")


def test_describe_is_json_safe():
    for name in step_type_names():
        json.dumps(type(get_step_type(name)).describe())


@pytest.mark.parametrize(
    "type_name, config, expected",
    [
        pytest.param("http", {}, [("config.url", "missing_config")], id="missing"),
        pytest.param("http", {"url": "ftp://x"}, [("config.url", "invalid_config")],
                     id="http-scheme"),
        pytest.param("http", {"url": "https://x.test", "headers": {"X": 1}},
                     [("config.headers.X", "invalid_config")], id="header-not-string"),
        pytest.param("log", {"message": "m", "level": "loud"}, [("config.level", "invalid_config")],
                     id="choice"),
        pytest.param("fail", {"fail_attempts": 1.5}, [("config.fail_attempts", "invalid_config")],
                     id="integer"),
        pytest.param("fail", {"retryable": "yes"}, [("config.retryable", "invalid_config")],
                     id="boolean"),
        pytest.param("python", {"callable": "echo", "kwargs": []},
                     [("config.kwargs", "invalid_config")], id="object"),
        pytest.param("noop", {"x": 1}, [("config.x", "invalid_config")], id="unknown-key"),
        pytest.param("noop", [1], [("config", "invalid_config")], id="not-object"),
        pytest.param("delay", {"seconds": -1}, [("config.seconds", "invalid_config")],
                     id="minimum"),
    ],
)
def test_validate_config(type_name, config, expected):
    issues = get_step_type(type_name).validate_config(config, "config")
    assert [(i.path, i.code) for i in issues] == expected


def test_run_step_rejects_bad_config_and_rendered_types():
    with pytest.raises(StepConfigError) as info:
        run("http", {})
    assert info.value.issues[0].path == "config.url"
    with pytest.raises(StepConfigError):
        run("delay", {"seconds": "{{ .params.who }}"})  # renders to a string
    with pytest.raises(TemplateError) as info:
        run("log", {"message": "{{ .params.who + 1 }}"})
    assert info.value.path == "config.message"


def test_context_defaults():
    c = StepContext(execution_id="e", node_id="n", shard_index=2)
    assert c.idempotency_key == "e:n:2"
    assert c.remaining_s() is None
    assert StepContext("e", "n", deadline_s=time.time() - 5).remaining_s() == 0.0


# ------------------------------------------------------------------ simple types


def test_noop():
    assert run("noop") == {}


def test_log(caplog):
    with caplog.at_level(logging.INFO, logger="pipelines.steps"):
        out = run("log", {"message": "hello {{ .params.who }}"})
    assert out == {"message": "hello ada"}
    assert "hello ada" in caplog.text
    record = caplog.records[-1]
    assert record.levelno == logging.INFO and record.execution_id == "ex-1"


def test_log_level_and_non_string():
    assert run("log", {"message": "{{ .params.n }}", "level": "warning"}) == {"message": "2"}


@pytest.mark.parametrize(
    "config, expected",
    [
        pytest.param({"program": ".params.n * 10"}, 20, id="default-input-is-context"),
        pytest.param({"program": ".[] | . + 1", "input": [1, 2], "multiple": True}, [2, 3],
                     id="multiple"),
        pytest.param({"program": ".[]", "input": [5, 6]}, 5, id="first"),
        pytest.param({"program": "map(. * 2)", "input": "{{ .steps.a.output.items }}"},
                     [2, 4, 6], id="templated-input"),
        pytest.param({"program": "empty", "input": 1}, None, id="no-output"),
        pytest.param({"program": ". == null", "input": None}, True, id="explicit-null-input"),
    ],
)
def test_jq(config, expected):
    assert run("jq", config) == expected


def test_jq_runtime_error_is_not_retryable():
    with pytest.raises(StepFailed) as info:
        run("jq", {"program": ". + 1", "input": "x"})
    assert info.value.retryable is False


@pytest.mark.parametrize(
    "expression, result",
    [
        pytest.param(".params.n > 1", True, id="true"),
        pytest.param(".params.n > 5", False, id="false"),
        pytest.param(".missing", False, id="null-is-false"),
        pytest.param(".params.who", True, id="string-is-true"),
        pytest.param("0", True, id="zero-is-true-in-jq"),
        pytest.param("{{ .params.n > 1 }}", True, id="pre-rendered"),
    ],
)
def test_condition(expression, result):
    assert run("condition", {"expression": expression}) == {
        "result": result, "branch": "true" if result else "false"}


def test_delay_sleeps():
    start = time.monotonic()
    assert run("delay", {"seconds": 0.05}) == {"slept_s": 0.05}
    assert time.monotonic() - start >= 0.05


def test_delay_respects_deadline():
    start = time.monotonic()
    with pytest.raises(StepFailed) as info:
        run("delay", {"seconds": 30}, deadline_s=time.time() + 0.05)
    assert time.monotonic() - start < 5
    assert "deadline" in str(info.value)


@pytest.mark.parametrize(
    "config, attempt, fails, retryable",
    [
        pytest.param({}, 1, True, True, id="always-fails"),
        pytest.param({}, 9, True, True, id="always-fails-late"),
        pytest.param({"fail_attempts": 2}, 1, True, True, id="first-attempt"),
        pytest.param({"fail_attempts": 2}, 2, True, True, id="second-attempt"),
        pytest.param({"fail_attempts": 2}, 3, False, None, id="then-succeeds"),
        pytest.param({"retryable": False, "message": "nope"}, 1, True, False, id="not-retryable"),
    ],
)
def test_fail(config, attempt, fails, retryable):
    if fails:
        with pytest.raises(StepFailed) as info:
            run("fail", config, attempt=attempt)
        assert info.value.retryable is retryable
        assert info.value.details["attempt"] == attempt
    else:
        assert run("fail", config, attempt=attempt) == {"attempt": 3, "failed_attempts": 2}


# ------------------------------------------------------------------ python


@pytest.mark.parametrize(
    "config, expected",
    [
        pytest.param({"callable": "echo", "kwargs": {"a": "{{ .params.who }}"}}, {"a": "ada"},
                     id="echo"),
        pytest.param({"callable": "add", "kwargs": {"values": [1, 2, 3.5]}}, 6.5, id="add"),
        pytest.param({"callable": "sleep", "kwargs": {"seconds": 0}}, {"slept_s": 0},
                     id="sleep"),
    ],
)
def test_python_builtin_callables(config, expected):
    assert run("python", config) == expected


def test_python_allow_list():
    assert {"echo", "add", "sleep"} <= set(callable_names())
    with pytest.raises(StepConfigError) as info:
        run("python", {"callable": "os.system", "kwargs": {"command": "true"}})
    assert "echo" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, retryable",
    [
        pytest.param({"values": "x"}, False, id="bad-values"),
        pytest.param({"nope": 1}, False, id="bad-kwargs"),
    ],
)
def test_python_bad_input_is_not_retryable(kwargs, retryable):
    with pytest.raises(StepFailed) as info:
        run("python", {"callable": "add", "kwargs": kwargs})
    assert info.value.retryable is retryable


def test_python_custom_callable_context_and_errors():
    calls = []

    @register_callable("test-ctx", pass_context=True)
    def with_ctx(ctx, x):
        calls.append(ctx.idempotency_key)
        return {"x": x, "shard": ctx.shard_index}

    @register_callable("test-flaky")
    def flaky():
        raise ConnectionError("database away")

    @register_callable("test-object")
    def returns_object():
        return object()

    try:
        assert run("python", {"callable": "test-ctx", "kwargs": {"x": 1}}, shard_index=3) == {
            "x": 1, "shard": 3}
        assert calls == ["ex-1:n1:3"]
        with pytest.raises(StepFailed) as info:
            run("python", {"callable": "test-flaky"})
        assert info.value.retryable is True
        with pytest.raises(StepFailed, match="JSON-safe"):
            run("python", {"callable": "test-object"})
    finally:
        for name in ("test-ctx", "test-flaky", "test-object"):
            unregister_callable(name)


# ------------------------------------------------------------------ http


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.seen.append({"path": self.path, "headers": dict(self.headers)})
        if self.path == "/ok":
            self._reply(200, {"hello": "world"})
        elif self.path == "/text":
            self._reply(200, b"plain text", "text/plain")
        elif self.path == "/boom":
            self._reply(500, {"error": "boom"})
        elif self.path == "/busy":
            self._reply(429, {"error": "slow down"})
        elif self.path == "/slow":
            time.sleep(1.0)
            self._reply(200, {})
        else:
            self._reply(404, b"no such thing", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self._reply(201, {"received": body})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    # Loopback is refused by default: the test opens exactly its own server's port.
    httpd.egress = EgressPolicy.allowing(f"127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_http_json_and_idempotency_key(server):
    httpd, base = server
    out = run("http", {"url": base + "/ok", "headers": {"X-Who": "{{ .params.who }}"}},
              idempotency_key="key-123", egress=httpd.egress)
    assert out == {"status": 200, "body": {"hello": "world"}}
    headers = httpd.seen[-1]["headers"]
    assert headers["Idempotency-Key"] == "key-123"
    assert headers["X-Who"] == "ada"


def test_http_post_json_body(server):
    httpd, base = server
    out = run("http", {"url": base + "/items", "method": "POST",
                       "json": {"n": "{{ .params.n }}"}}, egress=httpd.egress)
    assert out == {"status": 201, "body": {"received": {"n": 2}}}
    assert httpd.seen[-1]["headers"]["Content-Type"] == "application/json"
    assert httpd.seen[-1]["headers"]["Idempotency-Key"] == "ex-1:n1:0"


def test_http_text_body(server):
    httpd, base = server
    assert run("http", {"url": base + "/text"}, egress=httpd.egress) == {"status": 200, "body": "plain text"}


@pytest.mark.parametrize(
    "path, status, retryable",
    [
        pytest.param("/boom", 500, True, id="500-retryable"),
        pytest.param("/busy", 429, True, id="429-retryable"),
        pytest.param("/missing", 404, False, id="404-not-retryable"),
    ],
)
def test_http_error_status(server, path, status, retryable):
    httpd, base = server
    with pytest.raises(StepFailed) as info:
        run("http", {"url": base + path}, egress=httpd.egress)
    assert info.value.retryable is retryable
    assert info.value.details["status"] == status
    assert str(status) in str(info.value)
    json.dumps(info.value.details)


def test_http_404_body_excerpt(server):
    httpd, base = server
    with pytest.raises(StepFailed) as info:
        run("http", {"url": base + "/missing"}, egress=httpd.egress)
    assert info.value.details["body"] == "no such thing"


def test_http_timeout_is_retryable(server):
    httpd, base = server
    start = time.monotonic()
    with pytest.raises(StepFailed) as info:
        run("http", {"url": base + "/slow", "timeout_s": 0.2}, egress=httpd.egress)
    assert time.monotonic() - start < 0.9
    assert info.value.retryable is True
    assert info.value.details["reason"] == "timeout"


def test_http_deadline_shortens_timeout(server):
    httpd, base = server
    with pytest.raises(StepFailed) as info:
        run("http", {"url": base + "/slow", "timeout_s": 30}, deadline_s=time.time() + 0.2,
            egress=httpd.egress)
    assert info.value.retryable is True


def test_http_connection_refused_is_retryable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(StepFailed) as info:
        run("http", {"url": f"http://127.0.0.1:{port}/x", "timeout_s": 2},
            egress=EgressPolicy.allowing(f"127.0.0.1:{port}"))
    assert info.value.retryable is True
    assert info.value.details["reason"] == "connection"


def test_http_refuses_non_http_urls_at_run_time():
    # A template may render to any URL: the rendered config is checked again.
    with pytest.raises(StepConfigError):
        run("http", {"url": "{{ \"file:///etc/passwd\" }}"})
    # and the step itself refuses when called directly, without run_step
    with pytest.raises(StepFailed) as info:
        get_step_type("http").run({"url": "file:///etc/passwd"}, ctx())
    assert info.value.retryable is False


def test_an_approval_input_form_may_not_match_patterns_but_may_name_a_property_pattern():
    from pipelines.steps.approval import input_schema_issues

    issues = input_schema_issues({"properties": {"pattern": {"type": "string"},
                                                 "b": {"type": "array", "items": {"pattern": "(a+)+$"}}}}, "s")
    assert [i.path for i in issues] == ["s.properties.b.items.pattern"]
