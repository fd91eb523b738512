"""End-to-end egress policy: an http step on a real worker, its URL from trigger input.

The worker reads acme's allow-list from PostgreSQL (EGRESS_RULES_CACHE_S=0 here, so a rule
added during the test applies to the next run); the recorder fixture's rule opens only its port.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controlplane.egress.models import EgressAuditEvent
from controlplane.executions.models import DeadLetter, ExecutionStatus, StepRun
from tests.controlplane.executions.builders import job, make_deployment
from tests.e2e.engine_support import fleet, recorder, run_to_end  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

THREE_FAST_ATTEMPTS = {"max_attempts": 3, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
        self.end_headers()
        if not self.path.startswith("/redirect"):
            self.wfile.write(b"{}")


@pytest.fixture
def local_servers():
    """Two servers on 127.0.0.1 that no rule opens (until a test adds one)."""
    servers = []
    for _ in range(2):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.seen = []
        httpd.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((httpd, thread))
    yield [httpd for httpd, _ in servers]
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def uncached_worker_rules(monkeypatch):
    monkeypatch.setenv("EGRESS_RULES_CACHE_S", "0")  # inherited by the worker processes `fleet` starts


def test_http_steps_cannot_reach_local_services_unless_allow_listed(
    uncached_worker_rules, fleet, recorder, local_servers, project, owner, company, client_for,
):
    internal, redirector = local_servers
    deployment = make_deployment(project, [
        job("call", "http", config={"url": "{{ .trigger.url }}", "timeout_s": 5}, retry=THREE_FAST_ATTEMPTS),
    ], user=owner)

    def run(url):
        return run_to_end(deployment, owner, {"url": url})

    allowed = run(recorder.url("/fine"))
    assert allowed.status == ExecutionStatus.SUCCEEDED, allowed.error
    assert recorder.paths() == ["/fine"]

    client = client_for(owner)
    response = client.post("/api/v1/egress-rules", {"company": company.pk, "entry": f"127.0.0.1:{redirector.port}"},
                           format="json")
    assert response.status_code == 201
    refused = {
        "localhost": f"http://localhost:{internal.port}/admin/login/",
        "postgresql": "http://127.0.0.1:5432/",
        "redis": "http://localhost:6379/",
        "numeric": f"http://2130706433:{internal.port}/",
        "hex": f"http://0x7f.1:{internal.port}/",
        "mapped": f"http://[::ffff:7f00:1]:{internal.port}/",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "redirect": f"http://127.0.0.1:{redirector.port}/redirect?to=http://localhost:{internal.port}/secret",
    }
    for case, url in refused.items():
        execution = run(url)
        assert execution.status in (ExecutionStatus.FAILED, ExecutionStatus.COMPENSATED), (case, execution.error)
        attempts = list(StepRun.objects.filter(execution=execution, node_id="call").values_list("error", flat=True))
        assert len(attempts) == 1, (case, attempts)  # not retried
        error = attempts[0]
        assert error["code"] == "egress_denied" and error["retryable"] is False, (case, error)
        assert error["details"]["reason"] == "egress_denied", case
        assert {"address", "host", "port"} <= set(error["details"]), case
        letter = DeadLetter.objects.get(execution=execution)
        assert letter.attempts == 1 and letter.error["code"] == "egress_denied", case
    assert internal.seen == []
    assert redirector.seen == ["/redirect?to=http://localhost:{}/secret".format(internal.port)]

    response = client.post("/api/v1/egress-rules", {"company": company.pk, "entry": f"localhost:{internal.port}"},
                           format="json")
    assert response.status_code == 201
    opened = run(f"http://localhost:{internal.port}/now-allowed")
    assert opened.status == ExecutionStatus.SUCCEEDED, opened.error
    assert internal.seen == ["/now-allowed"]
    still_refused = run(f"http://127.0.0.1:{internal.port}/by-address")  # the rule names the host, not the address
    assert StepRun.objects.get(execution=still_refused).error["code"] == "egress_denied"
    events = EgressAuditEvent.objects.filter(company=company, action="created", actor=owner)
    assert events.count() == 2
