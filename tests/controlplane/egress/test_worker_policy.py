"""What a worker's step runs under: EGRESS_ALLOW plus its own company's rules, cached briefly."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from controlplane.egress import selectors
from controlplane.egress.services import egress_rule_create, egress_rule_delete, egress_rule_update
from controlplane.executions.services.attempts import run_spec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    selectors.egress_cache_clear()
    yield
    selectors.egress_cache_clear()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append(self.path)
        data = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.port = httpd.server_address[1]
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def run_http(company, url):
    return run_spec({"type": "http", "config": {"url": "{{ .trigger.url }}", "timeout_s": 3}},
                    context={"trigger": {"url": url}, "params": {}, "steps": {}},
                    company_id=company.pk, execution_id="ex-1", node_id="call", attempt=1, shard=0,
                    shard_count=1, idempotency_key="ex-1:call:0", timeout_s=10)


def entries(company_id):
    return [rule.canonical for rule in selectors.company_egress_rules(company_id)]


def test_rules_are_the_deployment_wide_ones_and_the_companys_own(settings, company, outsider, owner):
    settings.EGRESS_ALLOW = ["192.168.50.0/24", "ops.internal:9000"]
    other = outsider.memberships.get().company
    egress_rule_create(company=company, entry="10.20.0.0/16", user=owner)
    egress_rule_create(company=other, entry="10.99.0.0/16", user=outsider)
    assert entries(company.pk) == ["192.168.50.0/24", "ops.internal:9000", "10.20.0.0/16"]
    assert entries(other.pk) == ["192.168.50.0/24", "ops.internal:9000", "10.99.0.0/16"]


def test_rules_are_cached_for_the_ttl_and_dropped_on_a_change_in_this_process(settings, company, owner,
                                                                            django_capture_on_commit_callbacks):
    settings.EGRESS_RULES_CACHE_S = 60
    with django_capture_on_commit_callbacks(execute=True):
        rule = egress_rule_create(company=company, entry="10.20.0.0/16", user=owner)
    assert entries(company.pk) == ["10.20.0.0/16"]
    from controlplane.egress.models import EgressRule

    EgressRule.objects.filter(pk=rule.pk).update(entry="10.30.0.0/16")  # behind the service's back
    assert entries(company.pk) == ["10.20.0.0/16"]  # cached
    with django_capture_on_commit_callbacks(execute=True):
        egress_rule_update(rule=rule, entry="10.40.0.0/16", user=owner)
    assert entries(company.pk) == ["10.40.0.0/16"]
    with django_capture_on_commit_callbacks(execute=True):
        egress_rule_delete(rule=rule, user=owner)
    assert entries(company.pk) == []


def test_a_zero_ttl_reads_every_time(settings, company, owner):
    settings.EGRESS_RULES_CACHE_S = 0
    assert entries(company.pk) == []
    from controlplane.egress.models import EgressRule

    EgressRule.objects.create(company=company, entry="10.1.0.0/16")
    assert entries(company.pk) == ["10.1.0.0/16"]


def test_a_step_to_localhost_fails_for_good_with_egress_denied(company, server):
    rendered, output, error = run_http(company, f"http://localhost:{server.port}/admin/login/")
    assert output is None and error["retryable"] is False and error["code"] == "egress_denied"
    assert error["details"]["reason"] == "egress_denied"
    assert error["details"]["host"] == "localhost" and error["details"]["port"] == server.port
    assert error["details"]["address"] in ("127.0.0.1", "::1")
    assert "(host localhost)" in error["message"] and "egress allow-list" in error["message"]
    assert rendered["url"].startswith("http://localhost:")
    assert server.seen == []


@pytest.mark.parametrize("port", [5432, 6379], ids=["postgresql", "redis"])
def test_the_database_and_broker_ports_are_refused(company, port):
    _rendered, output, error = run_http(company, f"http://127.0.0.1:{port}/")
    assert output is None and error["code"] == "egress_denied" and error["details"]["port"] == port


def test_a_company_rule_opens_exactly_its_port_for_that_company(settings, company, outsider, owner, server):
    settings.EGRESS_RULES_CACHE_S = 0
    egress_rule_create(company=company, entry=f"127.0.0.1:{server.port}", user=owner)
    _rendered, output, error = run_http(company, f"http://127.0.0.1:{server.port}/ok")
    assert error is None and output == {"status": 200, "body": {"ok": True}}
    _rendered, output, error = run_http(company, "http://127.0.0.1:5432/")
    assert error["code"] == "egress_denied"
    other = outsider.memberships.get().company
    _rendered, output, error = run_http(other, f"http://127.0.0.1:{server.port}/ok")
    assert error["code"] == "egress_denied"
    assert server.seen == ["/ok"]


def test_the_deployment_wide_setting_opens_for_every_company(settings, company, server):
    settings.EGRESS_RULES_CACHE_S = 0
    settings.EGRESS_ALLOW = [f"localhost:{server.port}"]
    # localhost may answer ::1 first: nothing listens there, so the next allowed answer is tried.
    _rendered, output, error = run_http(company, f"http://localhost:{server.port}/wide")
    assert error is None and server.seen == ["/wide"]


def test_a_bad_deployment_wide_entry_stops_the_process(settings):
    settings.EGRESS_ALLOW = ["10.0.0.0/8", "0x7f.1"]
    with pytest.raises(ImproperlyConfigured, match="EGRESS_ALLOW.*0x7f.1"):
        apps.get_app_config("egress").ready()
