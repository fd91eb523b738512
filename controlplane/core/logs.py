"""Log records as events with their context: JSON lines for machines, a readable line on a terminal.

structlog renders the standard library's records (its `ProcessorFormatter`), so every logger of the
product and of its libraries (Django, Celery, kombu) goes through one formatter. Each record carries:

- its `extra={...}` fields (`logger.info("step.completed", extra={"step": ...})`);
- the context bound for the task being run (`bind_task_context`, `bind_attempt_context`): execution
  id, node, shard, attempt, company, worker group, worker and Celery task; contextvars, so a record
  from another thread or after the task carries none of it;
- the OpenTelemetry trace and span ids when a span is current.

`LOG_FORMAT`: `json` (one object a line), `console` (key=value after the message), or `auto` (the
default): console when stderr is a terminal, JSON otherwise (files, containers, CI).
"""
from __future__ import annotations

import sys
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars

from controlplane.core.telemetry import annotate_span

FORMATS = ("auto", "json", "console")


def _trace_ids(logger, method: str, event: dict[str, Any]) -> dict[str, Any]:
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional in a process
        return event
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event


def _exception_text(logger, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A record whose exception was already rendered to text (the workers' secret-masking filter
    masks it and drops the live exception) keeps that text."""
    record = event.get("_record")
    if record is not None and record.exc_text and "exc_info" not in event:
        event.setdefault("exception", record.exc_text)
    return event


def _processors() -> list:
    return [
        _exception_text,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: str):
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer(ensure_ascii=False, default=str)


def resolve_format(fmt: str, stream=None) -> str:
    """`auto` -> console on a terminal, json elsewhere; a name not in FORMATS is an error naming them."""
    fmt = (fmt or "auto").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "auto":
        stream = stream or sys.stderr
        return "console" if getattr(stream, "isatty", lambda: False)() else "json"
    return fmt


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The `LOGGING` dictConfig of the product."""
    fmt = resolve_format(fmt)
    processors = _processors()
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": processors,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt)],
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }


def bind_task_context(**fields: Any) -> None:
    """Start a task's log context afresh with `fields` (ids of what it works on; None left out)."""
    clear_contextvars()
    bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


def bind_attempt_context(**fields: Any) -> None:
    """Add what a claim learnt (company, group, attempt) to the running task's log context, and to
    its OpenTelemetry span when it has one."""
    bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
    annotate_span(fields)


def clear_task_context() -> None:
    clear_contextvars()
