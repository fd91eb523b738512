"""The `notify` step through the control plane's glue: email through Django's backend (locmem
here), secrets resolved from the running company only, and a plan refusing a webhook secret the
company does not have (another tenant's secret of that name does not count)."""
from __future__ import annotations

import pytest
from django.core import mail

from controlplane.catalog.services import secret_set
from controlplane.deployments.services import plan_create
from controlplane.executions.services.attempts import run_spec
from controlplane.tenancy.models import Company
from pipelines.steps.notify import IDEMPOTENCY_HEADER, message_id
from tests.controlplane.executions.builders import job, make_version

pytestmark = pytest.mark.django_db

CONTEXT = {"trigger": {"who": "ada"}, "params": {}, "steps": {}, "execution": {"id": "ex-1"}}
SLACK = {"type": "notify", "config": {"channel": "slack", "webhook": {"$secret": "hook"}, "text": "hi"}}


def run(spec, company, key="ex-1:tell:0"):
    return run_spec(spec, context=CONTEXT, company_id=company.pk, execution_id="ex-1", node_id="tell", attempt=1,
                    shard=0, shard_count=1, idempotency_key=key, timeout_s=10)


@pytest.fixture
def locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_FROM_EMAIL = "deploys@example.com"


def test_email_goes_through_django_with_the_idempotency_headers(locmem, company):
    spec = {"type": "notify", "config": {"channel": "email", "to": ["{{ .trigger.who }}@example.com"],
                                         "subject": "Run {{ .execution.id }}", "body": "done"}}

    rendered, output, error = run(spec, company)

    assert error is None, error
    [sent] = mail.outbox
    assert (sent.to, sent.subject, sent.body, sent.from_email) == (
        ["ada@example.com"], "Run ex-1", "done", "deploys@example.com")
    assert sent.extra_headers == {"Message-ID": message_id("ex-1:tell:0"), IDEMPOTENCY_HEADER: "ex-1:tell:0"}
    assert "Message-ID: " + message_id("ex-1:tell:0") in sent.message().as_string()
    assert output["message_id"] == message_id("ex-1:tell:0") and rendered["to"] == ["ada@example.com"]


def test_a_redelivered_email_carries_the_same_message_id(locmem, company):
    spec = {"type": "notify", "config": {"channel": "email", "to": ["ops@example.com"], "subject": "s", "body": "b"}}
    run(spec, company)
    run(spec, company)  # the same attempt delivered twice: the receiver can dedupe on Message-ID
    run(spec, company, key="ex-1:tell:1")
    ids = [m.extra_headers["Message-ID"] for m in mail.outbox]
    assert ids[0] == ids[1] != ids[2]


def test_a_webhook_secret_resolves_from_the_running_company_only(company, outsider):
    secret_set(company=Company.objects.get(slug="globex"), name="hook", value="http://127.0.0.1:9/T/B/theirs")

    rendered, output, error = run(SLACK, company)

    assert output is None and error["retryable"] is False
    assert error["details"]["issues"][0]["code"] == "missing_secret"
    assert "theirs" not in str(error) and rendered["webhook"] == {"$secret": "hook"}


def test_the_resolved_webhook_url_is_masked_in_what_is_recorded(company):
    secret_set(company=company, name="hook", value="http://127.0.0.1:9/T/B/xoxMaskedToken")

    rendered, output, error = run(SLACK, company)  # loopback is refused: the egress policy fails it

    assert error["code"] == "egress_denied" and error["retryable"] is False
    assert "xoxMaskedToken" not in str(error) + str(rendered)


def test_a_plan_names_a_missing_webhook_secret_with_its_path(groups, project, owner, outsider):
    secret_set(company=Company.objects.get(slug="globex"), name="hook", value="https://hooks.example/T/B/x")
    version = make_version(project, [job("tell", "notify", config=SLACK["config"])], user=owner)

    plan = plan_create(workflow=version.workflow, version=version, environment="prod", user=owner)

    assert ("missing_secret", "nodes[0].config.webhook") in [(e["code"], e["path"]) for e in plan.plan["errors"]]
