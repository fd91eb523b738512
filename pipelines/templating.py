"""``{{ <jq expression> }}`` templates inside config values.

Templates are evaluated against the execution context
``{"trigger": ..., "params": ..., "steps": {<id>: {"output": ...}}, "execution": ...}``.

- A string that is exactly one template becomes the jq result itself, of any JSON type
  (``"{{ .params.count }}"`` -> ``3``): the first output, or ``None`` when jq yields nothing.
- A string with templates inside text interpolates them: strings as they are, other values
  as compact JSON (``"n={{ .params.count }}"`` -> ``"n=3"``).
- Dicts and lists are rendered recursively; every error carries the path of its string.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jq

from pipelines import errors as E
from pipelines.errors import Issue, TemplateError

OPEN, CLOSE = "{{", "}}"
_PAIRS = {"{": "}", "[": "]", "(": ")"}


@functools.lru_cache(maxsize=2048)
def compile_expression(expr: str):
    """Compile a jq expression once; raises ``TemplateError`` naming the expression."""
    if not isinstance(expr, str) or not expr.strip():
        raise TemplateError("empty jq expression; write e.g. {{ .params.name }}",
                            expression=str(expr))
    try:
        return jq.compile(expr)
    except ValueError as exc:
        raise TemplateError(f"invalid jq {expr.strip()!r}: {_first_line(exc)}",
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
            issues.append(Issue(p, exc.message, E.INVALID_JQ))
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


def render(value: Any, context: dict, path: str = "config") -> Any:
    """Render every template in ``value`` against ``context``; returns a new value."""
    return _Renderer(context).render(value, path)


class _Renderer:
    # Serialize the context once per render: jq otherwise re-encodes it for every template.
    def __init__(self, context: Any):
        self.context = context
        self._text: str | None = None

    def context_text(self, path: str, expr: str) -> str:
        if self._text is None:
            try:
                self._text = json.dumps(self.context, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TemplateError(f"context is not JSON-safe: {exc}", path=path,
                                    expression=expr) from None
        return self._text

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
            raise TemplateError(exc.message, path=path, expression=expr) from None
        try:
            results = program.input_text(self.context_text(path, expr))
            return next(iter(results), None)
        except ValueError as exc:
            raise TemplateError(f"jq {expr!r} failed: {_first_line(exc)}", path=path,
                                expression=expr) from None


def evaluate(expr: str, context: Any, *, path: str = "", multiple: bool = False) -> Any:
    """Evaluate one jq expression (no ``{{ }}``); first result, or all when ``multiple``."""
    try:
        program = compile_expression(expr)
    except TemplateError as exc:
        raise TemplateError(exc.message, path=path, expression=expr) from None
    try:
        results = program.input_value(context)
        return list(results) if multiple else next(iter(results), None)
    except (ValueError, TypeError) as exc:
        raise TemplateError(f"jq {expr!r} failed: {_first_line(exc)}", path=path,
                            expression=expr) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    text = text.removeprefix("jq: error: ")
    first = text.splitlines()[0].rstrip(": ") if text else ""
    return first or type(exc).__name__
