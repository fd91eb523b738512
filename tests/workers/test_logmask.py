"""The workers' log filter masks the running step's secrets in every part of a record."""
from __future__ import annotations

import base64
import io
import json
import logging

import pytest

from pipelines.masking import masking_scope
from workers.logmask import SecretMaskingFilter, install_masking_filter

SECRET = "hunter2-Ö/+secret"


class JsonFormatter(logging.Formatter):
    """Writes `extra` fields too, the way a JSON log shipper would."""

    def format(self, record):
        extra = {k: v for k, v in vars(record).items() if k in ("token", "payload")}
        return json.dumps({"msg": record.getMessage(), **extra, "exc": self.formatException(record.exc_info)
                           if record.exc_info else record.exc_text}, ensure_ascii=False)


@pytest.fixture
def captured(request):
    logger = logging.getLogger(f"tests.logmask.{request.node.name}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    install_masking_filter(logger)
    assert install_masking_filter(logger) == 0  # once per handler
    assert any(isinstance(f, SecretMaskingFilter) for f in handler.filters)
    yield logger, handler, stream
    logger.removeHandler(handler)


def test_message_arguments_extra_and_exception_are_masked(captured):
    logger, handler, stream = captured
    handler.setFormatter(JsonFormatter())
    with masking_scope() as scope:
        scope.add(SECRET)
        logger.info("calling with %s and %r", SECRET, base64.b64encode(SECRET.encode()).decode(),
                    extra={"token": SECRET, "payload": {SECRET: [SECRET]}})
        try:
            raise ValueError(f"bad token {SECRET}")
        except ValueError:
            logger.exception("step failed")
    text = stream.getvalue()
    assert SECRET not in text and base64.b64encode(SECRET.encode()).decode() not in text
    first, second = (json.loads(line) for line in text.splitlines() if line.startswith("{"))
    assert first["msg"] == "calling with *** and '***'"
    assert first["token"] == "***" and first["payload"] == {"***": ["***"]}
    assert "bad token ***" in second["exc"]


def test_plain_formatter_exception_text_is_masked(captured):
    logger, handler, stream = captured
    handler.setFormatter(logging.Formatter("%(message)s"))
    with masking_scope() as scope:
        scope.add(SECRET)
        try:
            raise RuntimeError(SECRET)
        except RuntimeError:
            logger.error("boom %s", SECRET, exc_info=True)
    assert SECRET not in stream.getvalue() and "RuntimeError: ***" in stream.getvalue()


def test_records_outside_a_step_are_untouched(captured):
    logger, handler, stream = captured
    with masking_scope() as scope:
        scope.add(SECRET)
    logger.info("after the step: %s", SECRET)
    assert stream.getvalue() == f"after the step: {SECRET}\n"


def test_a_record_whose_arguments_do_not_format_is_still_masked_and_kept(captured):
    logger, handler, stream = captured
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d " + SECRET, ("nan",), None)
    with masking_scope() as scope:
        scope.add(SECRET)
        assert SecretMaskingFilter().filter(record) is True
    assert SECRET not in record.getMessage()
