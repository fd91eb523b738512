"""Sandboxed jq: no process environment, no modules, time and memory limits that leave the
calling process healthy. No database: these run the evaluator process for real."""

import json
import os
import signal
import threading
import time

import pytest

from pipelines import sandbox
from pipelines.errors import ResourceExhausted, StepFailed, TemplateError
from pipelines.steps import StepContext, get_step_type, render_step_config, run_step
from pipelines.templating import evaluate, render
from pipelines.validation import validate_graph

MARKER = "FLOWPLANE_SANDBOX_MARKER"
MARKER_VALUE = "leaked-4c1d"
LOOP = "def f: f; f"
ALLOCATE = "[range(1e9)]"
DOUBLE = 'reduce range(40) as $i ("x"; . + .) | length'  # reaches any cap within milliseconds
# A bounded wait: the budget, plus killing and reaping the evaluator, plus a loaded machine.
SLACK_S = 3.0


@pytest.fixture
def marked_env(monkeypatch):
    """A secret-looking variable in this process's environment, present when the evaluator
    process starts (it is restarted), so only the sandbox keeps it out."""
    monkeypatch.setenv(MARKER, MARKER_VALUE)
    monkeypatch.setenv("SECRET_KEY", MARKER_VALUE)
    sandbox.evaluator.close()
    yield
    sandbox.evaluator.close()


@pytest.fixture
def short_budget():
    before = sandbox.limits()
    sandbox.configure(time_budget_s=1.0)
    yield 1.0
    sandbox.configure(time_budget_s=before.time_budget_s, memory_mib=before.memory_mib)


def ctx(**overrides):
    return StepContext(**{"execution_id": "ex-1", "node_id": "n", **overrides})


def jq_step(program, data=None, **ctx_overrides):
    step = get_step_type("jq")
    return step.run(step.with_defaults({"program": program, "input": data or {}}), ctx(**ctx_overrides))


def assert_evaluates_again():
    assert evaluate("[.[] | . * 2]", [1, 2, 3]) == [2, 4, 6]
    assert sandbox.evaluator.pid not in (None, os.getpid())


# --- no environment, no files --------------------------------------------------------------


@pytest.mark.parametrize("program, expected", [
    pytest.param("$ENV", {}, id="dollar-env"),
    pytest.param("env", {}, id="env"),
    pytest.param(f"$ENV.{MARKER}", None, id="dollar-env-field"),
    pytest.param(f"env.{MARKER}", None, id="env-field"),
    pytest.param("$ENV|{SECRET_KEY,SECRETS_ENCRYPTION_KEY,DATABASE_URL}",
                 {"SECRET_KEY": None, "SECRETS_ENCRYPTION_KEY": None, "DATABASE_URL": None},
                 id="the-attack"),
    pytest.param('"\\(env)"', "{}", id="interpolated"),
    pytest.param("def g: $ENV; g", {}, id="inside-a-def"),
    pytest.param("[input_filename, get_search_list, get_jq_origin, get_prog_origin]",
                 [None, [], None, None], id="file-and-module-builtins"),
])
def test_jq_step_sees_no_environment(marked_env, program, expected):
    assert jq_step(program) == expected
    assert MARKER_VALUE not in json.dumps(jq_step(program))


def test_the_evaluator_process_itself_has_an_empty_environment(marked_env):
    # Below the prelude: the raw process environment of the evaluator.
    assert evaluate("1", None) == 1  # starts it
    [(kind, value)] = sandbox.evaluator.run([("$ENV", False)], "null", budget_s=5,
                                            memory_mib=sandbox.limits().memory_mib)
    assert (kind, value) == ("o", {})


def test_modulemeta_is_refused_at_run_time(marked_env):
    with pytest.raises(TemplateError, match="sandboxed"):
        evaluate('"x" | modulemeta', None)


def test_condition_step_sees_no_environment(marked_env):
    step = get_step_type("condition")
    assert step.run({"expression": f"env.{MARKER} == \"{MARKER_VALUE}\""}, ctx())["result"] is False
    assert step.run({"expression": "$ENV == {}"}, ctx())["result"] is True


def test_log_step_template_sees_no_environment(marked_env, caplog):
    out = run_step({"type": "log", "config": {"message": f"key={{{{ env.{MARKER} }}}} "
                                                          "all={{ $ENV }} {{ env.SECRET_KEY }}"}}, ctx())
    assert out == {"message": "key=null all={} null"}
    assert MARKER_VALUE not in caplog.text


def test_http_url_template_sees_no_environment(marked_env):
    spec = {"type": "http", "config": {"url": f"http://127.0.0.1:9/{{{{ $ENV.{MARKER} }}}}",
                                       "headers": {"X-Env": "{{ env | tojson }}"}}}
    config = render_step_config(spec, ctx())
    assert config["url"] == "http://127.0.0.1:9/null"
    assert config["headers"] == {"X-Env": "{}"}


@pytest.mark.parametrize("program, directive", [
    pytest.param('import "foo" as f; .', "import", id="import"),
    pytest.param('include "foo"; .', "include", id="include"),
    pytest.param('import "/etc/flowplane" as $data; $data', "import", id="import-data"),
    pytest.param('  # a comment first\n\timport "foo" as f; .', "import", id="after-comment"),
    pytest.param('module {"name": "x"}; .', "module", id="module"),
])
def test_module_directives_are_refused_at_validation_with_their_path(program, directive):
    graph = {"nodes": [
        {"id": "t", "type": "jq", "config": {"program": program}},
        {"id": "c", "type": "condition", "config": {"expression": program}},
        {"id": "l", "type": "log", "config": {"message": "x={{ " + program + " }}"}},
        {"id": "b", "blueprint": "bp@1", "params": {"p": "{{ " + program + " }}"}},
    ], "edges": []}
    report = validate_graph(graph)
    found = {(i.path, i.code) for i in report.issues}
    assert {("nodes[0].config.program", "forbidden_jq"), ("nodes[1].config.expression", "forbidden_jq"),
            ("nodes[2].config.message", "forbidden_jq"), ("nodes[3].params.p", "forbidden_jq")} <= found
    assert all(directive in i.message for i in report.issues if i.code == "forbidden_jq")


def test_the_prelude_itself_refuses_directives_that_the_text_check_would_miss():
    import jq

    for program in ('import "foo" as f; .', 'include "foo"; .', "# \\\n\nimport \"x\" as $x; $x"):
        with pytest.raises(ValueError):
            jq.compile(sandbox.sandboxed(program))


def test_a_directive_hidden_in_a_continued_comment_is_just_a_comment():
    assert sandbox.module_directive('# note \\\nimport "x" as x;\n.') is None
    assert evaluate('# note \\\nimport "x" as x;\n.a', {"a": 1}) == 1


def test_compile_errors_number_lines_as_the_author_wrote_them():
    with pytest.raises(TemplateError) as info:
        evaluate(".a |\n  .b |", {})
    assert "line 2" in info.value.message


# --- time and memory -----------------------------------------------------------------------


@pytest.mark.parametrize("program", [LOOP, ALLOCATE], ids=["loop", "allocation"])
def test_without_timeout_s_the_default_budget_ends_it(short_budget, program):
    started = time.monotonic()
    with pytest.raises(ResourceExhausted) as info:
        jq_step(program)
    elapsed = time.monotonic() - started
    assert elapsed < short_budget + SLACK_S
    assert info.value.details()["reason"] == "resource_exhausted"
    if info.value.limit == "time":
        assert "exceeded its 1s time budget" in info.value.message
    else:
        assert "MiB memory cap" in info.value.message
    assert_evaluates_again()


@pytest.mark.parametrize("program", [LOOP, ALLOCATE], ids=["loop", "allocation"])
def test_with_timeout_s_the_steps_remaining_time_ends_it(program):
    started = time.monotonic()
    with pytest.raises(ResourceExhausted) as info:
        jq_step(program, deadline_s=time.time() + 1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + SLACK_S
    assert info.value.limit in ("time", "memory")
    if info.value.limit == "time":
        # its budget ends a little before the step's deadline, leaving time to record the failure
        assert 1.0 < info.value.budget < 1.5 and "timeout_s" in info.value.message
    assert_evaluates_again()


def test_the_memory_cap_ends_an_allocation_and_names_the_cap():
    pid = (evaluate("1", None), sandbox.evaluator.pid)[1]
    with pytest.raises(ResourceExhausted) as info:
        jq_step(DOUBLE)
    assert info.value.limit == "memory"
    assert f"its {sandbox.limits().memory_mib} MiB memory cap" in info.value.message
    assert info.value.details() == {"reason": "resource_exhausted", "limit": "memory",
                                    "memory_mib": sandbox.limits().memory_mib,
                                    "path": "config.program"}
    assert_evaluates_again()
    assert sandbox.evaluator.pid != pid  # the evaluator died, not this process


def test_an_input_larger_than_the_memory_cap_is_the_memory_cap():
    before = sandbox.limits()
    sandbox.configure(memory_mib=64)
    try:
        with pytest.raises(ResourceExhausted) as info:
            jq_step(".s | length", {"s": "x" * 40_000_000})
        assert (info.value.limit, info.value.budget) == ("memory", 64)
    finally:
        sandbox.configure(memory_mib=before.memory_mib)
    assert_evaluates_again()


def test_the_condition_step_is_bounded_too(short_budget):
    with pytest.raises(ResourceExhausted):
        get_step_type("condition").run({"expression": "[repeat(1)] | length > 0"}, ctx())
    assert_evaluates_again()


def test_a_looping_template_fails_the_render_with_its_path():
    with pytest.raises(ResourceExhausted) as info:
        render({"a": "{{ .x }}", "b": {"c": "n={{ " + LOOP + " }}"}}, {"x": 1},
               deadline_s=time.time() + 1)
    assert (info.value.limit, info.value.path, info.value.expression) == ("time", "config.b.c", LOOP)
    assert_evaluates_again()


def test_a_soft_time_limit_while_waiting_kills_the_evaluator_and_propagates():
    class SoftLimit(Exception):
        pass

    def interrupt():
        raise SoftLimit()

    evaluate("1", None)
    pid = sandbox.evaluator.pid
    previous = signal.signal(signal.SIGALRM, lambda *_: interrupt())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(SoftLimit):
            jq_step(LOOP, deadline_s=time.time() + 30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert_evaluates_again()


# --- hostile and odd conditions ------------------------------------------------------------


def test_an_evaluator_killed_between_calls_is_replaced():
    evaluate("1", None)
    os.kill(sandbox.evaluator.pid, 9)
    time.sleep(0.05)
    assert_evaluates_again()


def test_an_evaluator_killed_from_outside_mid_evaluation_is_a_retryable_failure():
    evaluate("1", None)
    pid = sandbox.evaluator.pid
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGTERM))
    killer.start()
    try:
        with pytest.raises(StepFailed) as info:
            jq_step(LOOP, deadline_s=time.time() + 20)
    finally:
        killer.cancel()
    assert info.value.retryable and info.value.code == "sandbox_crashed"
    assert_evaluates_again()


def test_a_forked_process_gets_its_own_evaluator():
    evaluate("1", None)
    parent_evaluator = sandbox.evaluator.pid
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked process
        try:
            value = evaluate("[.[] + 1]", [1])
            os.write(write, json.dumps([value, sandbox.evaluator.pid]).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    value, child_evaluator = json.loads(os.read(read, 1000))
    os.close(read)
    assert status == 0 and value == [2]
    assert child_evaluator != parent_evaluator
    assert sandbox.evaluator.pid == parent_evaluator
    assert_evaluates_again()


def test_concurrent_threads_each_get_their_own_answer():
    results, errors = {}, []

    def worker(i):
        try:
            results[i] = evaluate("[.n, (.n * .n)]", {"n": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and results == {i: [i, i * i] for i in range(16)}


def test_a_large_input_and_output_cross_the_pipes():
    data = {"items": [{"id": i, "text": "x" * 100} for i in range(20_000)]}  # ~2.6 MB of JSON
    assert evaluate("[.items[] | .id] | add", data) == sum(range(20_000))
    out = evaluate("[.items[] | select(.id % 2 == 0)]", data)
    assert len(out) == 10_000 and out[-1] == {"id": 19_998, "text": "x" * 100}


def test_deeply_nested_output_is_an_error_not_a_crash():
    with pytest.raises((TemplateError, ResourceExhausted)):
        evaluate("reduce range(100000) as $i (0; [.])", None)
    assert_evaluates_again()


def test_templates_of_one_config_take_one_round_trip_and_plain_paths_none():
    context = {"a": {"b": [1, 2]}, "s": "x"}
    evaluate("1", None)
    before = sandbox.evaluator.requests
    assert render({"p": "{{ .a.b[0] }}", "q": '{{ ."s" }}-{{ .a["b"][-1] }}'}, context) == {"p": 1, "q": "x-2"}
    assert sandbox.evaluator.requests == before
    assert render({"x": "{{ .a.b | add }}", "y": ["{{ .s | ascii_upcase }}", "{{ .a.b | length }}"],
                   "z": "{{ .a.b | add }}"}, context) == {"x": 3, "y": ["X", 2], "z": 3}
    assert sandbox.evaluator.requests == before + 1


def test_the_first_failing_template_is_reported_in_document_order():
    with pytest.raises(TemplateError) as info:
        render({"a": "{{ .s | ascii_upcase }}", "b": "{{ error(\"boom\") }}", "c": "{{ " + LOOP + " }}"},
               {"s": "x"}, deadline_s=time.time() + 5)
    assert info.value.path == "config.b" and "boom" in info.value.message


@pytest.mark.parametrize("program, bounded", [
    (".", True), (".a", True), (".a.b.c", True), (".a[0]", True), (".[0]", True), ('.["x y"]', True),
    ('."x-y".z', True), (".a?.b", True), (".a[-1]", True), ("  .steps.fetch.output.token ", True),
    ("..", False), (".[]", False), (".a | .b", False), ("$ENV", False), ("env", False),
    ('."\\(env)"', False), (".a[1e9]", False), ("[.a]", False), (".a + 1", False), ("", False),
    (".a[0:2]", False), ("input", False),
])
def test_only_plain_paths_stay_in_process(program, bounded):
    assert sandbox.is_bounded_path(program) is bounded


def test_limits_are_validated():
    with pytest.raises(ValueError):
        sandbox.configure(time_budget_s=0)
    with pytest.raises(ValueError):
        sandbox.configure(memory_mib=1)


def test_a_context_too_deep_to_serialise_is_a_template_error():
    deep = 0
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(TemplateError, match="not JSON-safe"):
        render("{{ .x | length }}", {"x": deep})
    with pytest.raises(TemplateError, match="recursion"):
        evaluate(".x | length", {"x": deep})


def test_a_directive_that_only_appears_at_run_time_is_refused_too():
    # e.g. a jq step whose program is itself a template: validation could not see it
    with pytest.raises(StepFailed) as info:
        jq_step('include "x"; .')
    assert "not allowed" in info.value.message and not info.value.retryable
    with pytest.raises(TemplateError) as info:
        evaluate('import "x" as x; .', None)
    assert info.value.code == "forbidden_jq"
