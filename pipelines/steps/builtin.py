"""Small built-in step types: noop, log, jq, condition, delay, fail.

jq and condition evaluate through ``pipelines.templating.evaluate``, so they run sandboxed
within the step's deadline; a program that goes over a limit raises ``ResourceExhausted``,
which is not retried.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.errors import Issue, StepFailed, TemplateError
from pipelines.steps.base import Field, StepContext, StepType
from pipelines.steps.registry import register_step_type
from pipelines.templating import compile_expression, evaluate, has_template

logger = logging.getLogger("pipelines.steps")

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_DELAY_S = 3600
# jq's own compiler takes time quadratic in a program's length (8 KB of `1 + 1 + ...` take
# seconds), and compiling runs in the request that publishes a graph: longer programs are refused.
MAX_PROGRAM_CHARS = 8192
_PROGRAM = {"maxLength": MAX_PROGRAM_CHARS}


def _jq_issues(program: Any, path: str) -> list[Issue]:
    # Too long a program the schema already refused; it is not worth compiling.
    if not isinstance(program, str) or has_template(program) or len(program) > MAX_PROGRAM_CHARS:
        return []
    try:
        compile_expression(program)
    except TemplateError as exc:
        return [Issue(path, exc.message, exc.code)]
    return []


@register_step_type
class NoopStep(StepType):
    name = "noop"
    reads_context = False
    side_effect_free = True
    description = "Do nothing; useful as a join point or placeholder."
    config_schema: dict[str, Field] = {}

    def run(self, config: dict, ctx: StepContext) -> Any:
        return {}


@register_step_type
class LogStep(StepType):
    name = "log"
    reads_context = False
    side_effect_free = True  # a log line is an observation: written twice at worst, never undone
    description = "Write a message to the worker log."
    config_schema = {
        # "any": a whole-value template may render to a number or object; it is logged as text.
        "message": Field("any", required=True, description="text to log (may use templates)"),
        "level": Field("string", default="info", choices=LOG_LEVELS),
    }

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        message = config["message"]
        if not isinstance(message, str):  # a whole-value template may render to any type
            message = str(message)
        level = getattr(logging, str(config["level"]).upper(), logging.INFO)
        logger.log(level, "step.log %s", message, extra={
            "execution_id": ctx.execution_id, "step": ctx.node_id, "attempt": ctx.attempt,
        })
        return {"message": message}


@register_step_type
class JqStep(StepType):
    name = "jq"
    side_effect_free = True
    description = "Transform data with a jq program (sandboxed; compiled once, cached)."
    config_schema = {
        "program": Field("string", required=True, description="jq program", schema=_PROGRAM),
        "input": Field("any", description="input value; default: the whole execution context"),
        "multiple": Field("boolean", default=False,
                          description="output every result as a list instead of the first"),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if isinstance(config, dict):
            issues.extend(_jq_issues(config.get("program"), f"{path}.program"))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        data = config["input"] if "input" in config else ctx.context
        try:
            return evaluate(config["program"], data, path="config.program",
                            multiple=bool(config["multiple"]), deadline_s=ctx.deadline_s)
        except TemplateError as exc:
            # The same program fails the same way on the same input: not retryable.
            raise StepFailed(exc.message, retryable=False,
                             details={"program": config["program"]}) from None


@register_step_type
class ConditionStep(StepType):
    name = "condition"
    side_effect_free = True
    description = "Evaluate a jq expression on the context and take the 'true' or 'false' branch."
    config_schema = {
        # "any": a whole-value template ("{{ .x > 1 }}") arrives already rendered to a value.
        "expression": Field("any", required=True,
                            description="jq evaluated against the context; null/false is false",
                            schema=_PROGRAM),
    }

    def validate_config(self, config: Any, path: str = "config") -> list[Issue]:
        issues = super().validate_config(config, path)
        if isinstance(config, dict):
            issues.extend(_jq_issues(config.get("expression"), f"{path}.expression"))
        return issues

    def run(self, config: dict, ctx: StepContext) -> Any:
        expression = config["expression"]
        if isinstance(expression, str):
            try:
                value = evaluate(expression, ctx.context, path="config.expression",
                                 deadline_s=ctx.deadline_s)
            except TemplateError as exc:
                raise StepFailed(exc.message, retryable=False,
                                 details={"expression": expression}) from None
        else:
            value = expression  # a whole-value template already rendered it
        result = value is not None and value is not False  # jq truthiness
        return {"result": result, "branch": "true" if result else "false"}


@register_step_type
class DelayStep(StepType):
    name = "delay"
    reads_context = False
    description = f"Wait a number of seconds (0..{MAX_DELAY_S}), within the step's deadline."
    config_schema = {
        "seconds": Field("number", required=True, minimum=0, maximum=MAX_DELAY_S),
    }

    def run(self, config: dict, ctx: StepContext) -> Any:
        seconds = config["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 <= seconds <= MAX_DELAY_S
        ):
            raise StepFailed(f"delay seconds must be a number from 0 to {MAX_DELAY_S}, "
                             f"got {seconds!r}", retryable=False)
        remaining = ctx.remaining_s()
        if remaining is not None and remaining < seconds:
            # Sleep out the budget so the engine sees the timeout where it happened.
            time.sleep(remaining)
            raise StepFailed(f"delay of {seconds:g}s does not fit the step deadline "
                             f"({remaining:.3g}s left); raise timeout_s or shorten the delay",
                             retryable=False, details={"seconds": seconds,
                                                       "remaining_s": remaining})
        time.sleep(seconds)
        return {"slept_s": seconds}


@register_step_type
class FailStep(StepType):
    name = "fail"
    reads_context = False
    side_effect_free = True
    description = "Fail on purpose (for tests and drills); optionally only the first N attempts."
    config_schema = {
        "message": Field("string", default="failed on purpose"),
        "fail_attempts": Field("integer", default=0, minimum=0,
                               description="0: always fail; N: fail while attempt <= N"),
        "retryable": Field("boolean", default=True),
    }

    def run(self, config: dict, ctx: StepContext) -> Any:
        config = self.with_defaults(config)
        fail_attempts = config["fail_attempts"]
        if fail_attempts == 0 or ctx.attempt <= fail_attempts:
            raise StepFailed(str(config["message"]), retryable=bool(config["retryable"]),
                             details={"attempt": ctx.attempt, "fail_attempts": fail_attempts})
        return {"attempt": ctx.attempt, "failed_attempts": fail_attempts}
