"""Secrets resolved for a step never reach a store: steps run in-process through the services.

Given a company secret that reaches a python echo, a log step, a jq step that encodes it, a
failing step and a compensation, every store the services write (every column of every table),
the log records emitted while the steps ran, the Celery return values and the API a viewer reads
hold `***` where the value was. The same through real workers: tests/e2e/test_engine_secrets.py.
"""
from __future__ import annotations

import json

import pytest

from controlplane.catalog.services import secret_set
from controlplane.executions.models import DeadLetter, EventType, ExecutionStatus, StepRun
from controlplane.executions.services import (
    Delivery,
    compensation_execute,
    saga_finish,
    saga_start,
)
from controlplane.executions.services.attempts import run_spec
from pipelines.masking import MAX_DEPTH
from tests.controlplane.executions.builders import edges, job
from tests.controlplane.executions.test_services import DELIVERY, start, step
from tests.factories import add_member
from tests.secret_leaks import database_leaks, leaks_in, plaintext_forms
from workers.logmask import SecretMaskingFilter

pytestmark = pytest.mark.django_db(transaction=True)  # outside a test transaction: the unlocked path too

SECRET = 'Tök3n/+ "q"\\x&=?~'
REF = {"$secret": "api-token"}
FORMS = plaintext_forms(SECRET)
# jq's own encoders, run by a step on the value: base64, URL-encoding, JSON text, the value as a key.
JQ_PROGRAM = "{b64: @base64, uri: @uri, json: tojson, twice: (tojson | tojson), (.): [., {deep: [.]}]}"


@pytest.fixture
def secret(company):
    secret_set(company=company, name="api-token", value=SECRET)
    return SECRET


@pytest.fixture
def logged(caplog):
    """Log records of the run, through the workers' masking filter (as on a worker's handlers)."""
    caplog.handler.addFilter(SecretMaskingFilter())
    caplog.set_level("DEBUG")
    return caplog


def leaky_graph():
    return [
        job("echo", "python", config={"callable": "echo", "kwargs": {"token": REF, "nested": {"list": [REF]}}},
            compensate={"type": "python", "config": {"callable": "echo", "kwargs": {"undo": REF}}}),
        job("say", "log", config={"message": REF}),
        job("shape", "jq", config={"program": JQ_PROGRAM, "input": REF}),
        job("boom", "fail", config={"message": REF, "retryable": False}),
    ], edges(("echo", "say"), ("say", "shape"), ("shape", "boom"))


def run_saga(execution):
    outcomes = [saga_start(execution_id=execution.pk, delivery=DELIVERY)]
    for run in StepRun.objects.filter(execution=execution, is_compensation=False, node_id="echo"):
        outcomes.append(compensation_execute(execution_id=execution.pk, step_run_id=run.pk, delivery=DELIVERY))
    outcomes.append(saga_finish(execution_id=execution.pk, delivery=DELIVERY))
    return outcomes


def test_a_secret_reaching_every_echoing_step_is_stored_and_logged_masked(groups, project, owner, company, secret,
                                                                          logged, client_for):
    execution = start(project, owner, *leaky_graph())
    outcomes = [step(execution, node) for node in ("echo", "say", "shape", "boom")]
    outcomes += run_saga(execution)
    execution.refresh_from_db()

    assert execution.status == ExecutionStatus.COMPENSATED
    runs = {(r.node_id, r.is_compensation): r for r in StepRun.objects.filter(execution=execution)}
    assert runs[("echo", False)].output == {"token": "***", "nested": {"list": ["***"]}}
    assert runs[("echo", False)].input["kwargs"]["token"] == REF  # the stored input keeps the reference
    assert runs[("say", False)].output == {"message": "***"}
    assert runs[("shape", False)].output == {"b64": "***", "uri": "***", "json": '"***"', "twice": '"\\"***\\""',
                                             "***": ["***", {"deep": ["***"]}]}
    # A failure names the secret it held (run_step's redaction); encodings it missed are ***.
    assert runs[("boom", False)].error["message"] == "<secret:api-token>"
    assert runs[("echo", True)].output == {"undo": "***"}
    letter = DeadLetter.objects.get(execution=execution)
    assert letter.error["message"] == "<secret:api-token>" and letter.payload["input"]["message"] == REF
    assert execution.error["error"]["message"] == "<secret:api-token>"
    assert "step.log ***" in logged.text

    leaks = database_leaks(FORMS)
    leaks += leaks_in(logged.text, FORMS, "log records")
    leaks += leaks_in(json.dumps([o.result() for o in outcomes], ensure_ascii=False), FORMS, "task results")
    leaks += leaks_in(" ".join(o.detail for o in outcomes), FORMS, "task results")
    viewer = client_for(add_member(company))
    for path in (f"/api/v1/executions/{execution.pk}", f"/api/v1/executions/{execution.pk}/timeline",
                 f"/api/v1/executions/{execution.pk}/events", "/api/v1/dead-letters"):
        response = viewer.get(path)
        assert response.status_code == 200, path
        leaks += leaks_in(response.content.decode(), FORMS, path)
    assert leaks == []


def test_retries_and_an_unexpected_exception_carrying_the_secret_are_masked(groups, project, owner, secret):
    # A header value no server accepts: http.client raises ValueError naming it (an unexpected
    # exception, retried), before anything is sent.
    retry = {"max_attempts": 2, "initial_delay_s": 0.01, "max_delay_s": 0.01, "jitter": False}
    secret_set(company=project.company, name="bad-header", value="line\nbreak-secret")
    execution = start(project, owner, [job("call", "http", retry=retry, config={
        "url": "http://127.0.0.1:9/", "headers": {"X-Token": {"$secret": "bad-header"}}})])

    outcomes = [step(execution, "call") for _ in range(2)]

    assert [o.action for o in outcomes] == ["retry", "fail"]
    errors = [r.error for r in StepRun.objects.filter(execution=execution).order_by("attempt")]
    assert all("break-secret" not in json.dumps(e) for e in errors), errors
    assert database_leaks(plaintext_forms("line\nbreak-secret")) == []


def test_the_unlocked_path_records_masked_outputs(groups, project, owner, secret):
    execution = start(project, owner, [job("say", "log", config={"message": REF})])

    outcome = step(execution, "say")

    assert outcome.action == "done"
    assert execution.events.get(type=EventType.STEP_COMPLETED).data["output"] == {"message": "***"}
    assert database_leaks(FORMS) == []


def test_a_step_without_secrets_is_not_touched(groups, project, owner):
    rendered, output, error = run_spec(
        {"type": "python", "config": {"callable": "echo", "kwargs": {"n": 1, "s": "***x"}}}, context={},
        company_id=1, execution_id="e", node_id="n", attempt=1, shard=0, shard_count=1, idempotency_key="k",
        timeout_s=None)
    assert (output, error) == ({"n": 1, "s": "***x"}, None)


def test_an_output_too_deep_to_mask_is_a_step_error_not_a_crash(groups, project, owner, company, secret):
    # A config that deep is refused before it runs (document limits), so the step makes the depth.
    rendered, output, error = run_spec(
        {"type": "jq", "config": {"program": f"reduce range({MAX_DEPTH + 5}) as $i (.; [.])", "input": REF}},
        context={},
        company_id=company.pk, execution_id="e", node_id="n", attempt=1, shard=0, shard_count=1,
        idempotency_key="k", timeout_s=None)
    assert output is None and error["details"] == {"reason": "too_deep"} and not error["retryable"]
    assert rendered["input"] == REF  # the stored input keeps the reference, never the value


def test_another_tenants_secret_of_the_same_name_is_never_resolved(groups, project, owner, outsider, secret):
    from controlplane.tenancy.models import Company

    other = Company.objects.get(slug="globex")
    secret_set(company=other, name="api-token", value="globex-only-value")
    execution = start(project, owner, [job("echo", "python", config={"callable": "echo", "kwargs": {"t": REF}})])

    step(execution, "echo", delivery=Delivery(task_id="t-2", worker="ingest1@unit", queue="wg.acme.ingest"))

    assert StepRun.objects.get(execution=execution).output == {"t": "***"}
    assert database_leaks(plaintext_forms("globex-only-value")) == []


def test_a_template_interpolating_an_output_that_held_the_secret_stores_and_sends_only_the_mask(
        groups, project, owner, secret):
    execution = start(project, owner, [
        job("echo", "python", config={"callable": "echo", "kwargs": {"token": REF}}),
        job("use", "python", config={"callable": "echo", "kwargs": {"auth": "Bearer {{ .steps.echo.output.token }}"}}),
    ], edges(("echo", "use")))

    step(execution, "echo")
    step(execution, "use")

    use = StepRun.objects.get(execution=execution, node_id="use")
    assert use.input["kwargs"]["auth"] == "Bearer ***" and use.output == {"auth": "Bearer ***"}
    assert database_leaks(FORMS) == []


def test_run_time_data_cannot_choose_a_secret_to_resolve(groups, project, owner, company, secret):
    # Run-time data (a trigger's input, an upstream output) holds a reference; templating it into
    # a step's config must not make the engine resolve that secret.
    secret_set(company=company, name="other", value="other-secret-value")
    execution = start(project, owner, [
        job("upstream"),
        job("use", "python", config={"callable": "echo", "kwargs": {"t": "{{ .trigger.ref }}"}}),
    ], edges(("upstream", "use")), input={"ref": {"$secret": "other"}})

    step(execution, "upstream")
    outcome = step(execution, "use")

    assert outcome.action == "fail"
    use = StepRun.objects.get(execution=execution, node_id="use")
    assert [i["code"] for i in use.error["details"]["issues"]] == ["invalid_config"]
    assert database_leaks(plaintext_forms("other-secret-value")) == []
