"""The `notify` step without Django: config validation with paths, the webhook POST through the
egress policy, failure classes, the secret URL out of every failure, and email through a mailer."""
import json
import smtplib
import time
from http.server import BaseHTTPRequestHandler

import pytest

from pipelines.egress import EgressPolicy
from pipelines.errors import StepConfigError, StepFailed
from pipelines.steps import StepContext, StepSpec, get_step_type, run_step
from pipelines.steps.notify import IDEMPOTENCY_HEADER, address_problem, message_id
from tests.web_server import local_http_server

CONTEXT = {"trigger": {"who": "ada", "n": 3}, "params": {}, "steps": {"plan": {"output": {"changes": 2}}},
           "execution": {"id": "ex-1"}}
HOOK = {"$secret": "slack-hook"}


def issues(config):
    return [(i.path, i.code) for i in get_step_type("notify").validate_config(config)]


@pytest.mark.parametrize("config, expected", [
    pytest.param({"channel": "slack", "webhook": HOOK, "text": "hi"}, [], id="slack-ok"),
    pytest.param({"channel": "slack", "webhook": HOOK, "text": "{{ .trigger.who }}", "blocks": [{"type": "divider"}]},
                 [], id="slack-template-blocks"),
    pytest.param({"channel": "email", "to": ["a@example.com"], "subject": "s", "body": "b"}, [], id="email-ok"),
    pytest.param({"channel": "email", "to": "{{ .trigger.to }}", "subject": "s", "body": "b"}, [], id="email-to-template"),
    pytest.param({}, [("config.channel", "missing_config")], id="no-channel"),
    pytest.param({"channel": "sms"}, [("config.channel", "invalid_config")], id="unknown-channel"),
    pytest.param({"channel": "slack", "text": "hi"}, [("config.webhook", "missing_config")], id="slack-no-webhook"),
    pytest.param({"channel": "slack", "webhook": "https://hooks.slack.com/services/T/B/X", "text": "hi"},
                 [("config.webhook", "invalid_config")], id="slack-plain-url"),
    pytest.param({"channel": "slack", "webhook": "{{ .trigger.url }}", "text": "hi"},
                 [("config.webhook", "invalid_config")], id="slack-templated-url"),
    pytest.param({"channel": "slack", "webhook": HOOK, "text": "hi", "to": ["a@example.com"]},
                 [("config.to", "invalid_config")], id="slack-with-email-key"),
    pytest.param({"channel": "slack", "webhook": HOOK, "text": "hi", "blocks": {"no": "list"}},
                 [("config.blocks", "invalid_config")], id="blocks-not-list"),
    pytest.param({"channel": "email", "subject": "s", "body": "b"}, [("config.to", "missing_config")], id="email-no-to"),
    pytest.param({"channel": "email", "to": ["ok@example.com", "not-an-address", "x@y.z\r\nBcc: e@vil.com"],
                  "subject": "s", "body": "b"},
                 [("config.to[1]", "invalid_config"), ("config.to[2]", "invalid_config")], id="email-bad-addresses"),
    pytest.param({"channel": "email", "to": [], "subject": "s", "body": "b"}, [("config.to", "invalid_config")],
                 id="email-no-recipient"),
    pytest.param({"channel": "email", "to": ["a@example.com"] * 51, "subject": "s", "body": "b"},
                 [("config.to", "invalid_config")], id="email-too-many"),
    pytest.param({"channel": "email", "to": ["a@example.com"], "subject": "one\nBcc: e@vil.com", "body": "b"},
                 [("config.subject", "invalid_config")], id="email-subject-injection"),
    pytest.param({"channel": "email", "to": ["a@example.com"], "subject": "s", "body": "b", "webhook": HOOK},
                 [("config.webhook", "invalid_config")], id="email-with-webhook"),
    pytest.param({"channel": "slack", "webhook": HOOK, "text": "x" * 40_001}, [("config.text", "invalid_config")],
                 id="text-too-long"),
])
def test_config_validation(config, expected):
    assert sorted(issues(config)) == sorted(expected)


def test_huge_nested_blocks_are_refused_by_the_limits_not_walked():
    deep: list = []
    for _ in range(500):
        deep = [deep]
    found = issues({"channel": "slack", "webhook": HOOK, "text": "t", "blocks": deep})
    assert found and all(path.startswith("config.blocks") or path == "config" for path, _ in found)


@pytest.mark.parametrize("address, ok", [
    ("a@example.com", True), ("first.last+tag@sub.example.co", True), ("a@localhost", False),
    ("no-at.example.com", False), ("two@@example.com", False), ("sp ace@example.com", False),
    ("Name <a@example.com>", False), ("a@example.com\n", False), (7, False),
])
def test_address_problem(address, ok):
    assert (address_problem(address) is None) is ok


def test_message_id_is_stable_per_key_and_well_formed():
    assert message_id("ex:n:0") == message_id("ex:n:0") != message_id("ex:n:1")
    left, _, right = message_id("ex:n:0").strip("<>").partition("@")
    assert left.isalnum() and right == "flowplane.notify"


def test_step_type_is_described_with_its_schema():
    described = type(get_step_type("notify")).describe()
    assert described["side_effect_free"] is False
    assert set(described["config_schema"]["properties"]) >= {"channel", "webhook", "text", "to", "subject", "body"}
    json.dumps(described)


# ------------------------------------------------------------------ slack


class _Hook(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = {"/boom": 500, "/gone": 404, "/busy": 429}.get(self.path, 200)
        if self.path == "/slow":
            time.sleep(1)
        # Slack answers plain text; an error body that echoes the request path must not leak it.
        text = b"ok" if status == 200 else f"no_service for {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


@pytest.fixture
def hook():
    with local_http_server(_Hook) as httpd:
        httpd.seen = []
        httpd.egress = EgressPolicy.allowing(f"127.0.0.1:{httpd.server_address[1]}")
        yield httpd


def notify(config, secrets, **ctx):
    context = StepContext(execution_id="ex-1", node_id="tell", context=CONTEXT, **ctx)
    return run_step(StepSpec("notify", config), context, secret_resolver=lambda name: secrets[name])


def test_slack_posts_rendered_text_and_blocks_with_the_idempotency_key(hook):
    url = hook.base + "/services/T0/B0/s3cr3t"
    out = notify({"channel": "slack", "webhook": HOOK, "text": "{{ .trigger.who }} planned {{ .steps.plan.output.changes }}",
                  "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "{{ .trigger.n }}"}}]},
                 {"slack-hook": url}, egress=hook.egress, idempotency_key="ex-1:tell:0")
    assert out == {"channel": "slack", "status": 200, "response": "ok"}
    seen = hook.seen[-1]
    assert seen["path"] == "/services/T0/B0/s3cr3t"
    assert seen["body"] == {"text": "ada planned 2", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": 3}}]}
    assert seen["headers"]["Idempotency-Key"] == "ex-1:tell:0"
    assert seen["headers"]["Content-Type"] == "application/json"


def test_a_non_text_rendering_is_sent_as_json_text(hook):
    notify({"channel": "slack", "webhook": HOOK, "text": "{{ .trigger }}"}, {"slack-hook": hook.base + "/x"},
           egress=hook.egress)
    assert json.loads(hook.seen[-1]["body"]["text"]) == {"who": "ada", "n": 3}


@pytest.mark.parametrize("path, retryable", [("/boom", True), ("/busy", True), ("/gone", False)])
def test_slack_failures_are_classified_and_never_name_the_url(hook, path, retryable):
    url = hook.base + path
    with pytest.raises(StepFailed) as info:
        notify({"channel": "slack", "webhook": HOOK, "text": "t"}, {"slack-hook": url}, egress=hook.egress)
    assert info.value.retryable is retryable
    assert info.value.details["channel"] == "slack" and "url" not in info.value.details
    dumped = info.value.message + json.dumps(info.value.details)
    assert url not in dumped and path not in dumped


def test_slack_timeout_is_retryable(hook):
    with pytest.raises(StepFailed) as info:
        notify({"channel": "slack", "webhook": HOOK, "text": "t", "timeout_s": 0.2},
               {"slack-hook": hook.base + "/slow"}, egress=hook.egress)
    assert info.value.retryable is True and info.value.details["reason"] == "timeout"


def test_slack_webhook_refused_by_egress_policy_says_so_without_the_path(hook):
    url = hook.base + "/services/secret-path"
    with pytest.raises(StepFailed) as info:
        notify({"channel": "slack", "webhook": HOOK, "text": "t"}, {"slack-hook": url})  # default policy
    assert info.value.code == "egress_denied" and info.value.retryable is False
    assert "allow-list" in info.value.message
    assert "secret-path" not in info.value.message + json.dumps(info.value.details)
    assert hook.seen == []


def test_slack_bad_webhook_url_is_not_retried_and_not_shown():
    with pytest.raises(StepFailed) as info:
        notify({"channel": "slack", "webhook": HOOK, "text": "t"}, {"slack-hook": "ftp://files/hook-token"})
    assert info.value.retryable is False and "hook-token" not in info.value.message


# ------------------------------------------------------------------ email


class Outbox(list):
    def __call__(self, message):
        self.append(message)


EMAIL = {"channel": "email", "to": ["ops@example.com", "{{ .trigger.who }}@example.com"],
         "subject": "Deploy {{ .execution.id }}", "body": "{{ .steps.plan.output }}"}


def test_email_is_rendered_and_carries_a_message_id_from_the_key():
    outbox = Outbox()
    out = notify(EMAIL, {}, mailer=outbox, idempotency_key="ex-1:tell:0")
    [message] = outbox
    assert message["to"] == ["ops@example.com", "ada@example.com"]
    assert message["subject"] == "Deploy ex-1" and json.loads(message["body"]) == {"changes": 2}
    assert message["headers"] == {"Message-ID": message_id("ex-1:tell:0"), IDEMPOTENCY_HEADER: "ex-1:tell:0"}
    assert out == {"channel": "email", "to": message["to"], "message_id": message_id("ex-1:tell:0")}


def test_email_recipient_rendered_from_run_data_is_checked_again():
    outbox = Outbox()
    with pytest.raises(StepConfigError) as info:
        notify({**EMAIL, "to": ["{{ .trigger.who }}"]}, {}, mailer=outbox)
    assert [i.path for i in info.value.issues] == ["config.to[0]"]
    with pytest.raises(StepConfigError):
        notify({**EMAIL, "subject": "{{ \"a\\nBcc: evil@example.com\" }}"}, {}, mailer=outbox)
    assert outbox == []


@pytest.mark.parametrize("error, retryable", [
    (smtplib.SMTPRecipientsRefused({"ops@example.com": (550, b"no")}), False),
    (smtplib.SMTPServerDisconnected("gone"), True),
    (ConnectionRefusedError(111, "refused"), True),
])
def test_email_transport_errors_are_classified(error, retryable):
    def mailer(message):
        raise error

    with pytest.raises(StepFailed) as info:
        notify(EMAIL, {}, mailer=mailer)
    assert info.value.retryable is retryable and info.value.details["channel"] == "email"


def test_email_without_a_transport_fails_clearly():
    with pytest.raises(StepFailed) as info:
        notify(EMAIL, {})
    assert info.value.retryable is False and info.value.details["reason"] == "no_mailer"
