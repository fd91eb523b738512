"""End to end: a secret given to every step type that can echo it is found in no store, as no form.

Real workers (tracing on, so spans are in their logs too) run a workflow where one company secret
reaches a python echo, a callable that prints, logs and encodes it, a log step, a jq step that
encodes it, an http step whose server echoes the header back (plain, base64, Basic auth), an http
step that fails with the header in its error body (retried, dead-lettered), and compensations that
echo it again. Then every store is searched for each spelling of the plaintext: every column of
every table of the test database, both workers' log files, every key and value of the test's
Redis database (broker and result backend), and the API and operator pages as a viewer sees them.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from controlplane.catalog.services import secret_set
from controlplane.executions.models import DeadLetter, EventType, ExecutionStatus, StepRun
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, run_to_end  # noqa: F401  (fixtures)
from tests.e2e.harness import wait_until
from tests.factories import add_member
from tests.secret_leaks import database_leaks, leaks_in, plaintext_forms, redis_leaks

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Non-ASCII (latin-1, so it survives an HTTP header), base64's +/ characters, quotes, a backslash
# and URL-reserved characters: each encoding spells it differently.
SECRET = 'Tök3n/+ "q"\\x&=?~e2e'
REF = {"$secret": "api-token"}
# And a plain one: JSON columns hold it verbatim (the first only JSON-escaped, for its quotes).
PLAIN = "k9PlainSecret0042xyz"
PLAIN_REF = {"$secret": "plain-token"}
FORMS = {**plaintext_forms(SECRET), **{f"plain {label}": form for label, form in plaintext_forms(PLAIN).items()}}
JQ_PROGRAM = "{b64: @base64, uri: @uri, json: tojson, twice: (tojson | tojson), (.): [., {deep: [.]}]}"
FAST_RETRY = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}


@pytest.fixture
def echo_server(company):
    """Echoes the X-Token header it gets: in a JSON body (plain, base64, Basic auth), or, on
    /fail, in the text of a 500. Acme's egress allow-list opens exactly its port."""
    from controlplane.egress.services import egress_rule_create

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token = self.headers.get("X-Token", "")
            seen.append(token)
            raw = token.encode("latin-1")
            if self.path == "/fail":
                status, body = 500, f"refused token {token} ({base64.b64encode(raw).decode()})".encode()
            else:
                status, body = 200, json.dumps({
                    "headers": dict(self.headers.items()), "b64": base64.b64encode(raw).decode(),
                    "authorization": "Basic " + base64.b64encode(b"user:" + raw).decode(),
                }, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    egress_rule_create(company=company, entry=f"127.0.0.1:{server.server_address[1]}",
                       description="the secrets e2e test's echo server")
    server.seen = seen
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tracing_on(monkeypatch):
    """Workers started after this print their OpenTelemetry spans into their logs."""
    monkeypatch.setenv("FLOWPLANE_OTEL", "console")


def leaky_workflow(server) -> tuple[list, list]:
    echo_back = {"type": "http", "config": {"url": f"{server.url}/undo", "method": "POST",
                                            "headers": {"X-Token": REF}, "json": {}}}
    return [
        job("echo", "python", config={"callable": "echo", "kwargs": {"token": REF, "list": [REF], "plain": PLAIN_REF}},
            compensate=echo_back),
        job("spill", "python", group="load", config={"callable": "e2e.spill", "kwargs": {"value": REF}},
            compensate={"type": "python", "config": {"callable": "e2e.spill", "kwargs": {"value": REF}}}),
        job("say", "log", config={"message": REF}),
        job("shape", "jq", group="load", config={"program": JQ_PROGRAM, "input": REF}),
        job("call", "http", config={"url": f"{server.url}/echo", "method": "POST",
                                    "headers": {"X-Token": REF, "X-Plain": PLAIN_REF}, "json": {}}, compensate=echo_back),
        job("boom", "http", group="load", retry=FAST_RETRY,
            config={"url": f"{server.url}/fail", "method": "POST", "headers": {"X-Token": REF}, "json": {}}),
    ], edges(("echo", "spill"), ("spill", "say"), ("say", "shape"), ("shape", "call"), ("call", "boom"))


def test_a_secret_reaching_every_echoing_step_is_in_no_store(tracing_on, fleet, echo_server, project, company,
                                                             owner, client_for, redis_test_db):
    secret_set(company=company, name="api-token", value=SECRET)
    secret_set(company=company, name="plain-token", value=PLAIN)
    deployment = make_deployment(project, *leaky_workflow(echo_server), user=owner)

    execution = run_to_end(deployment, owner, timeout=60)

    # Given: the secret really reached every step and the server.
    assert execution.status == ExecutionStatus.COMPENSATED, execution.error
    assert echo_server.seen == [SECRET] * 5  # call, boom twice, two http compensations
    runs = {(r.node_id, r.attempt, r.is_compensation): r for r in StepRun.objects.filter(execution=execution)}
    assert runs[("echo", 1, False)].output == {"token": "***", "list": ["***"], "plain": "***"}
    assert runs[("echo", 1, False)].input["kwargs"]["token"] == REF
    spilled = runs[("spill", 1, False)].output
    assert spilled == {"b64": "***", "b64url": "***", "quoted": "***", "plus": "***", "json": '{"v": "***"}',
                       "nested": {"***": [{"deep": "***"}]}}
    assert runs[("say", 1, False)].output == {"message": "***"}
    assert runs[("shape", 1, False)].output["b64"] == "***" and "***" in runs[("shape", 1, False)].output
    echoed = runs[("call", 1, False)].output["body"]
    assert echoed["headers"]["X-Token"] == "***" and echoed["headers"]["X-Plain"] == "***" and echoed["b64"] == "***"
    assert echoed["authorization"].startswith("Basic ") and "***" in echoed["authorization"]
    assert "***" in runs[("boom", 2, False)].error["message"]
    assert runs[("call", 1, True)].output["body"]["headers"]["X-Token"] == "***"
    assert runs[("spill", 1, True)].status == "succeeded"
    assert DeadLetter.objects.filter(execution=execution, node_id="boom").exists()
    assert execution.events.filter(type=EventType.STEP_RETRYING).exists()
    # Every task's result is in Redis before its worker logs the task as done.
    workers = fleet.workers.values()
    finished = re.compile(r"Task flowplane\.saga_finish\[[^\]]+\] succeeded")
    wait_until(lambda: any(finished.search(w.log_text()) for w in workers), timeout=20,
               what="the saga's last task to be recorded")
    logs = {w.hostname: w.log_text() for w in workers}
    assert "step.log ***" in logs["ingest1@e2e"] and "spill: printing ***" in logs["load1@e2e"]
    assert "spill: an exception about '***'" in logs["load1@e2e"]
    assert all('"trace_id"' in text for text in logs.values())  # the spans are in the logs searched

    # Then: no form of it is in any store.
    leaks = database_leaks(FORMS) + redis_leaks(redis_test_db, FORMS)
    for hostname, text in logs.items():
        leaks += leaks_in(text, FORMS, f"worker log {hostname}")
    viewer_user = add_member(company)
    viewer = client_for(viewer_user)
    for path in (f"/api/v1/executions/{execution.pk}", f"/api/v1/executions/{execution.pk}/timeline",
                 f"/api/v1/executions/{execution.pk}/events", "/api/v1/dead-letters"):
        response = viewer.get(path)
        assert response.status_code == 200, path
        leaks += leaks_in(response.content.decode(), FORMS, path)
    pages = Client()
    pages.force_login(viewer_user)
    page = pages.get(f"/executions/{execution.pk}/")
    assert page.status_code == 200
    leaks += leaks_in(page.content.decode(), FORMS, "execution page")
    assert leaks == []
