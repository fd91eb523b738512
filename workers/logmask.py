"""Worker logs never carry a secret: a filter on every handler masks records emitted while a step runs.

The engine masks what a step returns (`run_spec`); what a step logs on its way (the `log` step,
a callable's `print` or `logging` call, a library's debug line naming a URL) is masked here, with
the mask of the step running in the record's context (`pipelines.masking.active_mask`: a
contextvar, so a record from another thread or after the step carries nothing to mask).

The filter sits on handlers rather than loggers, because a record reaches a handler through
every logger between it and the root, and it sees the finished record (message, arguments,
`extra` fields, the exception text) just before it is written. It is installed on the handlers
Celery sets up (root and task loggers) and, in each pool process, on every handler then
configured (Django's LOGGING, the stdout redirection, anything a library added).
"""
from __future__ import annotations

import logging

from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

from pipelines.masking import SecretMask, active_mask

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class SecretMaskingFilter(logging.Filter):
    """Masks the current step's secrets in a record; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask = active_mask()
        if mask:
            mask_record(record, mask)
        return True


def mask_record(record: logging.LogRecord, mask: SecretMask) -> None:
    """Rewrite `record` in place: the formatted message, `extra` fields, exception and stack text."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not format: logging would report it; keep the raw parts
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = mask.text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask.text(record.exc_text)
    # Formatters print `exc_text` without `exc_info`; anything that would read the live exception
    # (its message again, a traceback's locals) gets nothing.
    record.exc_info = None
    if record.stack_info:
        record.stack_info = mask.text(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _STANDARD:
            try:
                record.__dict__[key] = mask.apply(value)
            except Exception:  # too deep to mask: the field goes, the line stays
                record.__dict__[key] = "***"


_FILTER = SecretMaskingFilter()


def install_masking_filter(*loggers: logging.Logger) -> int:
    """Add the filter to every handler of `loggers` (default: the root and every known logger)
    that lacks it; the number of handlers it was added to."""
    if not loggers:
        loggers = (logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values()
                                          if isinstance(item, logging.Logger)))
    added = 0
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
                added += 1
    return added


@after_setup_logger.connect(weak=False)
@after_setup_task_logger.connect(weak=False)
def _on_logger_setup(logger=None, **kwargs) -> None:
    install_masking_filter(*([logger] if logger is not None else []))


@worker_process_init.connect(weak=False)
def _on_pool_process(**kwargs) -> None:
    install_masking_filter()
