"""End to end: `notify` steps on real workers.

A local server on 127.0.0.1 plays the Slack incoming webhook (acme's allow-list opens its port);
its URL is a company secret whose path is the credential. Email goes through Django's file
backend, which the worker processes write and the test reads. Then the webhook URL, and its
path alone, is searched for in every table, both worker logs and the test's Redis database.
"""
from __future__ import annotations

import email
import json
from http.server import BaseHTTPRequestHandler

import pytest

from controlplane.catalog.services import secret_set
from controlplane.executions.models import DeadLetter, ExecutionStatus, StepRun
from pipelines.steps.notify import IDEMPOTENCY_HEADER, message_id
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.e2e.engine_support import fleet, run_to_end  # noqa: F401  (fixtures)
from tests.secret_leaks import database_leaks, leaks_in, plaintext_forms, redis_leaks
from tests.web_server import local_http_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN_PATH = "/services/T0E2E/B0E2E/xoxWebhookCredential42"
FAST_RETRY = {"max_attempts": 2, "initial_delay_s": 0.05, "max_delay_s": 0.1, "jitter": False}


@pytest.fixture
def slack(company):
    """A Slack-compatible webhook: 200 "ok" on the token path; on /fail a 500 whose text echoes
    the path it was asked for (as some servers' error pages do)."""
    from controlplane.egress.services import egress_rule_create

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.server.seen.append({"path": self.path, "body": body, "key": self.headers.get("Idempotency-Key")})
            status, text = (500, f"no service at {self.path}") if self.path.startswith("/fail") else (200, "ok")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

    with local_http_server(Handler) as server:
        server.seen = []
        egress_rule_create(company=company, entry=f"127.0.0.1:{server.server_address[1]}",
                           description="the notify e2e test's webhook")
        yield server


@pytest.fixture
def outbox(monkeypatch, tmp_path):
    """Workers started after this write their emails as files here."""
    path = tmp_path / "outbox"
    path.mkdir()
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(path))
    return path


def sent_emails(path) -> list[email.message.Message]:
    out = []
    for file in sorted(path.iterdir()):
        # The file backend writes each message followed by a line of dashes.
        for chunk in file.read_text().split("-" * 79):
            if chunk.strip():
                out.append(email.message_from_string(chunk.strip() + "\n"))
    return out


def test_notify_posts_to_the_webhook_and_emails_without_leaking_the_webhook_url(
    outbox, fleet, slack, project, company, owner, redis_test_db,
):
    secret_set(company=company, name="slack-hook", value=slack.base + TOKEN_PATH)
    secret_set(company=company, name="broken-hook", value=slack.base + "/fail" + TOKEN_PATH)
    secret_set(company=company, name="far-hook", value="http://127.0.0.1:9" + TOKEN_PATH)  # not allow-listed
    hook = {"$secret": "slack-hook"}
    deployment = make_deployment(project, [
        job("tell", "notify", config={"channel": "slack", "webhook": hook,
                                      "text": "{{ .trigger.who }} deployed {{ .trigger.version }}",
                                      "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*done*"}}]}),
        job("mail", "notify", group="load", config={
            "channel": "email", "to": ["ops@example.com", "{{ .trigger.who }}@example.com"],
            "subject": "Deployed {{ .trigger.version }}", "body": "{{ .steps.tell.output }}"}),
    ], edges(("tell", "mail")), user=owner)

    execution = run_to_end(deployment, owner, {"who": "ada", "version": "v7"}, timeout=60)

    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    [posted] = slack.seen
    assert posted["path"] == TOKEN_PATH
    assert posted["body"]["text"] == "ada deployed v7" and posted["body"]["blocks"][0]["type"] == "section"
    assert posted["key"] == f"{execution.pk}:tell:0"
    [mail] = sent_emails(outbox)
    assert mail["To"] == "ops@example.com, ada@example.com" and mail["Subject"] == "Deployed v7"
    assert mail["Message-ID"] == message_id(f"{execution.pk}:mail:0")
    assert mail[IDEMPOTENCY_HEADER] == f"{execution.pk}:mail:0"
    assert json.loads(mail.get_payload()) == {"channel": "slack", "status": 200, "response": "ok"}
    tell = StepRun.objects.get(execution=execution, node_id="tell")
    assert tell.input["webhook"] == hook  # the reference is stored, never the URL

    # A webhook that answers 5xx is retried, then dead-lettered; the error does not name the URL.
    broken = make_deployment(project, [
        job("tell", "notify", retry=FAST_RETRY,
            config={"channel": "slack", "webhook": {"$secret": "broken-hook"}, "text": "t"}),
    ], user=owner)
    failed = run_to_end(broken, owner, timeout=60)
    assert failed.status in (ExecutionStatus.FAILED, ExecutionStatus.COMPENSATED), failed.error
    attempts = list(StepRun.objects.filter(execution=failed, node_id="tell").order_by("attempt"))
    assert [a.attempt for a in attempts] == [1, 2] and attempts[-1].error["retryable"] is True
    assert attempts[-1].error["details"]["status"] == 500
    retried = [call["key"] for call in slack.seen if call["path"].startswith("/fail")]
    assert retried == [f"{failed.pk}:tell:0"] * 2  # each attempt presents the same key: the receiver can dedupe
    letter = DeadLetter.objects.get(execution=failed)
    assert "500" in letter.error["message"]

    # A webhook on an address the allow-list does not open: refused at connect, not retried.
    far = make_deployment(project, [
        job("tell", "notify", retry=FAST_RETRY,
            config={"channel": "slack", "webhook": {"$secret": "far-hook"}, "text": "t"}),
    ], user=owner)
    refused = run_to_end(far, owner, timeout=60)
    assert refused.status in (ExecutionStatus.FAILED, ExecutionStatus.COMPENSATED)
    [attempt] = StepRun.objects.filter(execution=refused, node_id="tell")
    assert attempt.error["code"] == "egress_denied" and attempt.error["retryable"] is False
    assert "allow-list" in attempt.error["message"] and attempt.error["details"]["port"] == 9

    # The credential is in no store: no table, no worker log, no broker or result key.
    forms = {**plaintext_forms(TOKEN_PATH), **{f"url {k}": v for k, v in plaintext_forms(slack.base + TOKEN_PATH).items()}}
    leaks = database_leaks(forms)
    leaks += redis_leaks(redis_test_db, forms)
    for worker in fleet.workers.values():
        leaks += leaks_in(worker.log_text(), forms, f"worker log {worker.hostname}")
    assert leaks == []
