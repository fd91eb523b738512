"""``{{ <jq expression> }}`` templates inside config values.

Templates are evaluated against the execution context
``{"trigger": ..., "params": ..., "steps": {<id>: {"output": ...}}, "execution": ...}``.

- A string that is exactly one template becomes the jq result itself, of any JSON type
  (``"{{ .params.count }}"`` -> ``3``): the first output, or ``None`` when jq yields nothing.
- A string with templates inside text interpolates them: strings as they are, other values
  as compact JSON (``"n={{ .params.count }}"`` -> ``"n=3"``).
- Dicts and lists are rendered recursively; every error carries the path of its string.

Every expression is sandboxed (``pipelines.sandbox``): ``$ENV`` and ``env`` are ``{}``, module
directives are refused, and anything but a plain path (``.steps.fetch.output.token``) runs in
the sandbox process within a time budget (the step's deadline, when given) and memory cap.
All such templates of one config go there in one round trip; plain paths stay in-process.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jq

from pipelines import errors as E
from pipelines import sandbox
from pipelines.errors import Issue, TemplateError

OPEN, CLOSE = "{{", "}}"
_PAIRS = {"{": "}", "[": "]", "(": ")"}


@functools.lru_cache(maxsize=2048)
def compile_expression(expr: str):
    """Compile a jq expression once, sandboxed; raises ``TemplateError`` naming the expression
    (code ``forbidden_jq`` for a module directive, ``invalid_jq`` otherwise)."""
    if not isinstance(expr, str) or not expr.strip():
        raise TemplateError("empty jq expression; write e.g. {{ .params.name }}",
                            expression=str(expr))
    directive = sandbox.module_directive(expr)
    if directive:
        raise TemplateError(f"jq {directive!r} is not allowed: programs run sandboxed, without "
                            "modules or files; define what you need inline with def",
                            expression=expr, code=E.FORBIDDEN_JQ)
    try:
        return jq.compile(sandbox.sandboxed(expr))
    except ValueError as exc:
        raise TemplateError(f"invalid jq {expr.strip()!r}: "
                            f"{sandbox.author_message(_first_line(exc))}",
                            expression=expr) from None


def has_template(value: Any) -> bool:
    return isinstance(value, str) and OPEN in value


@functools.lru_cache(maxsize=4096)
def split_template(text: str) -> tuple[tuple[str, str], ...]:
    """Split text into ``("text", s)`` and ``("expr", e)`` parts. Raises ``TemplateError``
    when a ``{{`` is never closed.

    A plain regex would end ``{{ {a: {b: 1}} }}`` at the first ``}}``; the scanner tracks
    brackets and jq string literals so only a ``}}`` at depth 0 closes a template.
    """
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            break
        end = _find_close(text, start + 2)
        if end < 0:
            raise TemplateError(f"unterminated template starting at character {start}; "
                                "close it with }}", expression=text[start:])
        if start > pos:
            parts.append(("text", text[pos:start]))
        parts.append(("expr", text[start + 2:end].strip()))
        pos = end + 2
    if pos < len(text):
        parts.append(("text", text[pos:]))
    return tuple(parts)


def _find_close(text: str, i: int) -> int:
    # If brackets never balance (the expression itself is broken), fall back to the first
    # "}}" so the author hears about the jq error, not about a missing "}}".
    fallback = text.find(CLOSE, i)
    stack: list[str] = []
    in_string = False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif not stack and text.startswith(CLOSE, i):
            return i
        elif stack and ch == stack[-1]:
            stack.pop()
        i += 1
    return fallback


def find_templates(value: Any, path: str = "config") -> list[tuple[str, str]]:
    """Every ``(path, expression)`` in ``value``, depth first. Raises ``TemplateError`` on an
    unterminated template."""
    found: list[tuple[str, str]] = []
    for p, text in _strings(value, path):
        try:
            parts = split_template(text)
        except TemplateError as exc:
            raise TemplateError(exc.message, path=p, expression=exc.expression) from None
        found.extend((p, expr) for kind, expr in parts if kind == "expr")
    return found


def template_issues(value: Any, path: str = "config") -> list[Issue]:
    """``invalid_jq`` issues for templates that do not split or compile; never raises."""
    issues: list[Issue] = []
    for p, text in _strings(value, path):
        try:
            parts = split_template(text)
            for kind, expr in parts:
                if kind == "expr":
                    compile_expression(expr)
        except TemplateError as exc:
            issues.append(Issue(p, exc.message, exc.code))
    return issues


def _strings(value: Any, path: str):
    if isinstance(value, str):
        if OPEN in value:
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def render(value: Any, context: dict, path: str = "config", *,
           deadline_s: float | None = None) -> Any:
    """Render every template in ``value`` against ``context``; returns a new value.

    ``deadline_s`` (absolute ``time.time()``) bounds the sandboxed templates; without it they
    get the default budget. Raises ``TemplateError`` or ``ResourceExhausted``.
    """
    renderer = _Renderer(context, deadline_s)
    renderer.prefetch(value, path)
    return renderer.render(value, path)


class _Renderer:
    # Serialize the context once per render: jq otherwise re-encodes it for every template.
    def __init__(self, context: Any, deadline_s: float | None):
        self.context = context
        self.deadline_s = deadline_s
        self._text: str | None = None
        self._results: dict[str, list] = {}

    def context_text(self, path: str, expr: str) -> str:
        if self._text is None:
            try:
                self._text = json.dumps(self.context, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:  # too deep is not JSON-safe here
                raise TemplateError(f"context is not JSON-safe: {exc}", path=path,
                                    expression=expr) from None
        return self._text

    def prefetch(self, value: Any, path: str) -> None:
        """Evaluate every template that needs the sandbox in one round trip, in document order.

        Templates that do not split or compile are left for ``render`` to report at their
        path; the sandbox stops at the first failing expression, as ``render`` would.
        """
        pending: dict[str, str] = {}  # expression -> path of its first use
        for p, expr in _compiling_templates(value, path):
            if expr not in pending and not sandbox.is_bounded_path(expr):
                pending[expr] = p
        if not pending:
            return
        first_expr, first_path = next(iter(pending.items()))
        try:
            text = self.context_text(first_path, first_expr)
        except TemplateError:
            return  # render reports it at the first template
        several = len(pending) > 1
        results = sandbox.run([(expr, False) for expr in pending], text,
                              deadline_s=self.deadline_s, stop_on_error=True,
                              path=path if several else first_path,
                              expression="" if several else first_expr)
        self._results = dict(zip(pending, results))

    def render(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.render_string(value, path) if OPEN in value else value
        if isinstance(value, dict):
            return {k: self.render(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.render(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def render_string(self, text: str, path: str) -> Any:
        try:
            parts = split_template(text)
        except TemplateError as exc:
            raise TemplateError(exc.message, path=path, expression=exc.expression) from None
        if len(parts) == 1 and parts[0][0] == "expr":
            return self.evaluate(parts[0][1], path)
        out = []
        for kind, piece in parts:
            if kind == "text":
                out.append(piece)
                continue
            result = self.evaluate(piece, path)
            out.append(result if isinstance(result, str)
                       else json.dumps(result, separators=(",", ":"), ensure_ascii=False))
        return "".join(out)

    def evaluate(self, expr: str, path: str) -> Any:
        try:
            program = compile_expression(expr)
        except TemplateError as exc:
            raise TemplateError(exc.message, path=path, expression=expr, code=exc.code) from None
        text = self.context_text(path, expr)
        if sandbox.is_bounded_path(expr):
            try:
                return next(iter(program.input_text(text)), None)
            except ValueError as exc:
                raise _failed(expr, exc, path) from None
        result = self._results.get(expr)
        if result is None:  # not prefetched (render of a value prefetch did not see)
            result = sandbox.run([(expr, False)], text, deadline_s=self.deadline_s,
                                 path=path, expression=expr)[0]
            self._results[expr] = result
        kind, payload = result
        if kind == "e":
            raise TemplateError(f"jq {expr!r} failed: {_clean(payload)}", path=path,
                                expression=expr)
        return payload


def _compiling_templates(value: Any, path: str):
    """``(path, expression)`` in document order, up to the first that does not split or compile
    (render reports that one; nothing after it is evaluated)."""
    for p, text in _strings(value, path):
        try:
            parts = split_template(text)
            for kind, expr in parts:
                if kind == "expr":
                    compile_expression(expr)
                    yield p, expr
        except TemplateError:
            return


def evaluate(expr: str, context: Any, *, path: str = "", multiple: bool = False,
             deadline_s: float | None = None) -> Any:
    """Evaluate one jq expression (no ``{{ }}``); first result, or all when ``multiple``.

    Sandboxed like templates: raises ``TemplateError`` or ``ResourceExhausted``.
    """
    try:
        program = compile_expression(expr)
    except TemplateError as exc:
        raise TemplateError(exc.message, path=path, expression=expr, code=exc.code) from None
    try:
        text = json.dumps(context, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise _failed(expr, exc, path) from None
    if sandbox.is_bounded_path(expr):
        try:
            results = program.input_text(text)
            return list(results) if multiple else next(iter(results), None)
        except ValueError as exc:
            raise _failed(expr, exc, path) from None
    [(kind, payload)] = sandbox.run([(expr, multiple)], text, deadline_s=deadline_s,
                                    path=path, expression=expr)
    if kind == "e":
        raise TemplateError(f"jq {expr!r} failed: {_clean(payload)}", path=path,
                            expression=expr)
    return payload


def _failed(expr: str, exc: Exception, path: str) -> TemplateError:
    return TemplateError(f"jq {expr!r} failed: {_first_line(exc)}", path=path, expression=expr)


def _clean(message: str) -> str:
    """The first line of a jq message, without its ``jq: error:`` prefix."""
    text = message.strip().removeprefix("jq: error: ")
    first = text.splitlines()[0].rstrip(": ") if text else ""
    return first or "error"


def _first_line(exc: Exception) -> str:
    return _clean(str(exc)) if str(exc).strip() else type(exc).__name__
