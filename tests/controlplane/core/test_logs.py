"""The log formats: JSON lines with context and extra fields, a readable console line."""
from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from controlplane.core.logs import bind_task_context, clear_task_context, logging_config, resolve_format


def emit(fmt: str, **extra) -> str:
    stream = io.StringIO()
    config = logging_config(fmt=fmt, level="INFO")
    formatter = logging.config.DictConfigurator(config).configure_custom(dict(config["formatters"]["structured"]))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    try:
        logger.warning("step.completed %s", "ok", extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_carry_the_bound_context_and_extra_fields():
    bind_task_context(execution_id="e-1", node="a", shard=0, attempt=None)
    try:
        record = json.loads(emit("json", step="a"))
    finally:
        clear_task_context()
    assert record["event"] == "step.completed ok" and record["level"] == "warning"
    assert (record["execution_id"], record["node"], record["shard"], record["step"]) == ("e-1", "a", 0, "a")
    assert "attempt" not in record  # None is left out
    assert json.loads(emit("json"))["logger"] == "tests.logs" and "execution_id" not in json.loads(emit("json"))


def test_the_console_format_is_one_readable_line():
    line = emit("console", step="a")
    assert "step.completed ok" in line and "step=a" in line and not line.lstrip().startswith("{")


def test_auto_is_console_on_a_terminal_and_json_elsewhere():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert resolve_format("auto", Tty()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT='xml'"):
        resolve_format("xml")
