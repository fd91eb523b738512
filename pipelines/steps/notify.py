"""The ``notify`` step: a Slack-compatible incoming-webhook POST, or an email.

``channel: slack`` posts ``{text, blocks?}`` as JSON to ``webhook``. The webhook URL is a
credential (whoever knows it may post), so the config must name it as a secret reference
``{"$secret": name}``: it is resolved only for the request and never shows in the step's
record. The request goes through the ``http`` step itself, so it passes the same egress policy
(checked on the connected address), timeouts and failure classes: 5xx, 429 and timeouts are
retried, other 4xx are not. The URL is taken out of every failure message on top of the
engine's masking.

``channel: email`` hands ``{to, subject, body, headers}`` to ``ctx.mailer`` (the control plane
passes Django's email backend; pipelines stays free of Django). Refused recipients fail for
good; a transport that cannot be reached is retried.

Both carry the step's idempotency key (``Idempotency-Key`` for the webhook, a ``Message-ID``
derived from it plus ``X-Flowplane-Idempotency-Key`` for email), so a redelivered step can be
recognised by the receiver.
"""

from __future__ import annotations

import hashlib
import json
import re
import smtplib
from typing import Any
from urllib.parse import urlsplit

from pipelines import errors as E
from pipelines.errors import Issue, StepFailed
from pipelines.secrets import is_secret_ref
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.http import HttpStep
from pipelines.steps.registry import register_step_type
from pipelines.templating import has_template

CHANNELS = ("slack", "email")
# What each channel needs and accepts beyond `channel` and `timeout_s`.
REQUIRED = {"slack": ("webhook", "text"), "email": ("to", "subject", "body")}
ACCEPTED = {"slack": {"webhook", "text", "blocks"}, "email": {"to", "subject", "body"}}
MAX_TEXT_CHARS = 40_000  # Slack truncates a message's text beyond this
MAX_BODY_CHARS = 1_000_000
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit
MAX_RECIPIENTS = 50
MESSAGE_ID_DOMAIN = "flowplane.notify"
IDEMPOTENCY_HEADER = "X-Flowplane-Idempotency-Key"
# Deliberately plain: one @, no spaces, no CR/LF or header punctuation, a dotted domain.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def address_problem(address: Any) -> str | None:
    """Why ``address`` is no usable recipient address, or None."""
    if not isinstance(address, str):
        return f"a recipient must be a string address, got {type(address).__name__}"
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        return f"{address[:80]!r} is not an email address (name@example.com)"
    return None


def message_id(idempotency_key: str, domain: str = MESSAGE_ID_DOMAIN) -> str:
    """A Message-ID stable for one idempotency key: a redelivered email carries the same one."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def as_text(value: Any) -> str:
    """A rendered text value as text: a template may render to a number or an object."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


@register_step_type
class NotifyStep(StepType):
    name = "notify"
    reads_context = False
    description = ("Send a notification: a Slack-compatible incoming-webhook POST (channel slack) "
                   "or an email through the control plane's mail backend (channel email).")
    config_schema = {
        "channel": Field("string", required=True, choices=CHANNELS),
        "webhook": Field("string", description='slack: the incoming-webhook URL as {"$secret": name}'),
        "text": Field("any", description="slack: the message text (may use templates)",
                      schema={"maxLength": MAX_TEXT_CHARS}),
        "blocks": Field("array", description="slack: Block Kit blocks, sent as given"),
        "to": Field("array", description="email: the recipient addresses",
                    schema={"items": {"type": "string"}, "maxItems": MAX_RECIPIENTS}),
        "subject": Field("string", description="email: one line of subject",
                         schema={"maxLength": MAX_SUBJECT_CHARS}),
        "body": Field("any", description="email: the plain-text body (may use templates)",
                      schema={"maxLength": MAX_BODY_CHARS}),
        "timeout_s": Field("number", default=10, minimum=0.001, maximum=3600),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if not isinstance(config, dict) or config.get("channel") not in CHANNELS:
            return issues
        channel = config["channel"]
        for key in REQUIRED[channel]:
            if config.get(key) is None:
                issues.append(Issue(f"{path}.{key}", f"channel {channel!r} requires config {key!r}",
                                    E.MISSING_CONFIG))
        other = "email" if channel == "slack" else "slack"
        for key in sorted(ACCEPTED[other] & set(config)):
            if config[key] is not None:
                issues.append(Issue(f"{path}.{key}", f"config {key!r} belongs to channel {other!r}, not "
                                                     f"{channel!r}; remove it", E.INVALID_CONFIG))
        if channel == "slack":
            issues += _webhook_issues(config.get("webhook"), f"{path}.webhook")
        else:
            issues += _recipient_issues(config.get("to"), f"{path}.to")
            subject = config.get("subject")
            if isinstance(subject, str) and ("\n" in subject or "\r" in subject):
                issues.append(Issue(f"{path}.subject", "config 'subject' must be one line; remove the "
                                                       "line breaks", E.INVALID_CONFIG))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        if config["channel"] == "slack":
            return _post_to_webhook(config, ctx)
        return _send_email(config, ctx)


def _webhook_issues(webhook: Any, path: str) -> list[Issue]:
    if webhook is None or is_secret_ref(webhook):
        return []
    # A URL written in the graph would be stored, diffed and shown; a template could render one
    # from run-time data. Either way the credential would not be a secret.
    return [Issue(path, 'the webhook URL is a credential; store it as a secret and write '
                        '{"$secret": "<name>"} here', E.INVALID_CONFIG)]


def _recipient_issues(to: Any, path: str) -> list[Issue]:
    if not isinstance(to, list):
        return []  # absent, a template, or the wrong type: reported elsewhere or checked once rendered
    if not to:
        return [Issue(path, "config 'to' lists no recipient; name at least one address", E.INVALID_CONFIG)]
    issues = []
    for i, address in enumerate(to):
        if isinstance(address, str) and has_template(address):
            continue
        problem = address_problem(address)
        if problem:
            issues.append(Issue(f"{path}[{i}]", problem, E.INVALID_CONFIG))
    return issues


def _post_to_webhook(config: dict, ctx: StepContext) -> dict[str, Any]:
    url = config["webhook"]
    payload: dict[str, Any] = {"text": as_text(config["text"])}
    if config.get("blocks") is not None:
        payload["blocks"] = config["blocks"]
    request = {"url": url, "method": "POST", "json": payload, "timeout_s": config["timeout_s"],
               "headers": {"Accept": "*/*"}}
    try:
        response = HttpStep().run(request, ctx)
    except StepFailed as exc:
        raise _without_url(exc, url) from None
    return {"channel": "slack", "status": response["status"], "response": response["body"]}


def _without_url(exc: StepFailed, url: str) -> StepFailed:
    """``exc`` with the webhook URL, and its path on its own, out of its message and details:
    the path is the credential, and a server's error page may echo it."""
    parts = urlsplit(url) if isinstance(url, str) else None
    path = parts.path + (f"?{parts.query}" if parts.query else "") if parts else ""
    spellings = [s for s in (url, path) if isinstance(s, str) and len(s) > 1]

    def scrub(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for spelling in spellings:
            text = text.replace(spelling, "<webhook>")
        return text

    details = {k: scrub(v) for k, v in exc.details.items() if k != "url"}
    return StepFailed(scrub(exc.message), retryable=exc.retryable, details={**details, "channel": "slack"},
                      code=exc.code)


def _send_email(config: dict, ctx: StepContext) -> dict[str, Any]:
    to = config["to"]
    problems = [address_problem(a) for a in to] if isinstance(to, list) else ["'to' must be a list"]
    if not to or any(problems):
        raise StepFailed(f"cannot send email: {'; '.join(p for p in problems if p) or 'no recipient'}",
                         retryable=False, details={"channel": "email", "reason": "invalid_recipient"})
    if ctx.mailer is None:
        raise StepFailed("no mail transport is configured for this worker; email notifications need "
                         "the control plane's mail backend", retryable=False,
                         details={"channel": "email", "reason": "no_mailer"})
    msg_id = message_id(ctx.idempotency_key)
    message = {
        "to": list(to), "subject": as_text(config["subject"]), "body": as_text(config["body"]),
        "headers": {"Message-ID": msg_id, IDEMPOTENCY_HEADER: ctx.idempotency_key},
    }
    try:
        ctx.mailer(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise StepFailed(f"the mail server refused every recipient: {', '.join(sorted(exc.recipients))}",
                         retryable=False, details={"channel": "email", "reason": "recipients_refused"}) from None
    except (smtplib.SMTPException, OSError) as exc:  # a server away or busy may take it later
        raise StepFailed(f"sending email failed: {type(exc).__name__}: {exc}", retryable=True,
                         details={"channel": "email", "reason": "transport"}) from None
    return {"channel": "email", "to": list(to), "message_id": msg_id}
