"""Formatting filters of the operator pages. Output is plain text: autoescaping still applies."""
from __future__ import annotations

import json

from django import template

register = template.Library()

EXCERPT_CHARS = 160


@register.filter
def excerpt(value, length: int = EXCERPT_CHARS) -> str:
    """A JSON value (or text) on one line, cut to `length` characters with an ellipsis."""
    if value is None or value == "" or value == {} or value == []:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    length = int(length)
    return text if len(text) <= length else text[: length - 1] + "\u2026"


@register.filter
def duration_ms(value) -> str:
    """Milliseconds as `850 ms`, `12.3 s` or `4 min 05 s`; empty when unknown."""
    if value is None:
        return ""
    ms = int(value)
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes} min {seconds:02d} s"


@register.filter
def age_s(value) -> str:
    """Seconds as `3 s ago`, `5 min ago`, `2 h ago`."""
    if value is None:
        return ""
    seconds = int(float(value))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


@register.filter
def short_digest(value, length: int = 12) -> str:
    """`sha256:0123456789ab...` -> `0123456789ab` (the hex prefix a person compares)."""
    if not value:
        return ""
    return str(value).split(":", 1)[-1][: int(length)]


@register.filter
def elapsed_ms(start, end):
    """`{{ started|elapsed_ms:finished|duration_ms }}`: milliseconds between two datetimes, or None."""
    if not start or not end:
        return None
    return int((end - start).total_seconds() * 1000)


@register.filter
def pretty_json(value) -> str:
    """A JSON value indented for a <pre> (plain text: autoescaping still applies); `-` when empty."""
    if value is None:
        return "-"
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.filter
def css_pct(value) -> str:
    """A percentage for a style attribute, with a dot whatever the locale (`12.5`)."""
    return f"{float(value or 0):.3f}".rstrip("0").rstrip(".")
