"""The mail transport `notify` steps send email through: Django's email backend.

`pipelines` knows no Django; `run_spec` hands this function to each step as `ctx.mailer`.
EMAIL_BACKEND picks the backend (SMTP in production; tests use locmem, or the file backend when
the sender is a separate worker process); NOTIFY_FROM_EMAIL is the sender.
"""
from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage


def send_step_email(message: dict) -> None:
    """Send one email of a `notify` step: {to, subject, body, headers}. Transport errors
    (smtplib's, OSError) propagate: the step classifies them for its retry policy."""
    EmailMessage(
        subject=message["subject"], body=message["body"], from_email=settings.NOTIFY_FROM_EMAIL,
        to=list(message["to"]), headers=dict(message.get("headers") or {}),
    ).send(fail_silently=False)
