"""Masking secret values out of whatever a step leaves behind: outputs, errors, inputs, log lines.

A step that was given a secret may echo it (a `python` echo, a `log` message, a server that
returns the header it got), often encoded. Like CI systems (GitHub Actions, GitLab), every value
resolved for a step is replaced by ``***`` wherever the engine records anything from that step, in
each of its common spellings:

- verbatim;
- base64 (of the UTF-8 bytes, and of the latin-1 bytes HTTP headers travel as), standard and
  URL-safe alphabets, with and without ``=`` padding, plus the run of
  characters that spells the value inside a longer base64 text at either of the other two byte
  alignments (``Basic base64("user:" + secret)``);
- URL-encoded with ``quote`` (``safe=""`` and the default ``"/"``) and ``quote_plus``, with upper-
  and lower-case hex escapes;
- JSON-escaped (``json.dumps`` without the quotes), with non-ASCII kept and ``\\uXXXX``-escaped
  (either hex case), and JSON-escaped twice (JSON text inside a JSON string);
- as Python writes it in ``repr`` (of the text, and of its UTF-8 bytes), as exception messages do.

Short values: a value of fewer than ``MIN_ENCODED_LENGTH`` characters is masked verbatim only.
Its encodings are 1-8 characters that occur by chance in any base64 blob, URL or id, so masking
them would shred unrelated data while hiding almost nothing: a value that short can be guessed
anyway. The verbatim form is masked at any length: a mangled log beats a leaked value.

``SecretMask`` is built once per step run from the resolved values: every form is precomputed
into one regular expression (a trie of their first characters, see ``_FormFinder``), so masking
a string is a pre-check plus, only when some form occurs, one scan that finds every occurrence,
longest first, overlapping ones included (two secrets sharing characters are both hidden, as one
``***``).

``masking_scope`` makes the mask of the step running in the current context (thread or task)
visible to ``active_mask``, for a logging filter that masks records emitted while it runs.
"""

from __future__ import annotations

import base64
import contextvars
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from os.path import commonprefix
from typing import Any
from urllib.parse import quote, quote_plus

from pipelines.errors import PipelineError
from pipelines.secrets import is_secret_ref

MASK = "***"
MIN_ENCODED_LENGTH = 6
# Values nesting deeper than this are not masked but refused (and so not recorded): the recursion
# stays bounded, so a tenant's callable cannot crash the worker with a deep value.
MAX_DEPTH = 200

_URLSAFE = str.maketrans("+/", "-_")
_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")
_UNICODE_ESCAPE = re.compile(r"\\u[0-9a-f]{4}")


class MaskDepthError(PipelineError):
    """A value to mask nests deeper than ``MAX_DEPTH`` levels."""


def secret_forms(value: str) -> frozenset[str]:
    """Every spelling of ``value`` that is masked (see the module docstring); empty for ""."""
    if not value:
        return frozenset()
    forms = {value}
    if len(value) >= MIN_ENCODED_LENGTH:
        forms |= _base64_forms(value.encode("utf-8"))
        try:  # HTTP headers travel as latin-1: a server echoing a header's bytes encodes those
            forms |= _base64_forms(value.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        for quoted in (quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)):
            forms |= {quoted, _PERCENT_HEX.sub(lambda m: m.group().lower(), quoted)}
        for escaped in (json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]):
            forms |= {escaped, _UNICODE_ESCAPE.sub(lambda m: "\\u" + m.group()[2:].upper(), escaped)}
            forms |= {json.dumps(escaped)[1:-1], json.dumps(escaped, ensure_ascii=False)[1:-1]}
        # Python reprs, as exception messages write values (`!r`): of the text and of its bytes.
        forms |= {repr(value)[1:-1], ascii(value)[1:-1], repr(value.encode("utf-8"))[2:-1]}
    return frozenset(form for form in forms if form)


def _base64_forms(raw: bytes) -> set[str]:
    forms = set()
    for offset in (0, 1, 2):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        if offset == 0:
            forms |= {encoded, encoded.rstrip("=")}
        # Characters whose 6 bits come from the value alone, whatever bytes surround it.
        start = -(-8 * offset // 6)
        end = 8 * (offset + len(raw)) // 6
        interior = encoded[start:end]
        if len(interior) >= MIN_ENCODED_LENGTH:
            forms.add(interior)
    return forms | {form.translate(_URLSAFE) for form in forms}


class SecretMask:
    """Replaces every form of the given values by ``MASK`` in strings, nested data and keys.

    Falsy when there is nothing to mask; then ``apply`` returns its argument itself.
    """

    __slots__ = ("values", "_forms", "_finder")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = frozenset(v for v in values if isinstance(v, str) and v)
        forms: set[str] = set()
        for value in self.values:
            forms |= secret_forms(value)
        self._forms = tuple(sorted(forms, key=lambda f: (-len(f), f)))
        self._finder = _FormFinder(self._forms) if self._forms else None

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __repr__(self) -> str:  # never the values themselves
        return f"SecretMask({len(self.values)} value(s), {len(self._forms)} form(s))"

    def extended(self, values: Iterable[str]) -> SecretMask:
        """A mask of these values and ``values``."""
        return SecretMask(self.values | frozenset(values))

    def text(self, text: str) -> str:
        """``text`` with every occurrence of every form replaced; overlapping ones as one ``MASK``."""
        if self._finder is None:
            return text
        spans = self._finder.spans(text)
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out += [text[last:start], MASK]
            last = end
        out.append(text[last:])
        return "".join(out)

    def apply(self, value: Any) -> Any:
        """A copy of JSON-like ``value`` with strings, dict keys and numbers masked; ``{"$secret":
        name}`` references are kept as they are (they name a secret, they do not hold it).
        Raises ``MaskDepthError`` beyond ``MAX_DEPTH`` levels."""
        if not self:
            return value
        return self._apply(value, 0)

    def _apply(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            # A numeric secret that a step turned into a number (jq `tonumber`) is still the secret.
            return MASK if self.text(str(value)) != str(value) else value
        if depth >= MAX_DEPTH:
            raise MaskDepthError(f"value nests deeper than {MAX_DEPTH} levels; flatten the step's output")
        if isinstance(value, Mapping):
            if is_secret_ref(value):
                return dict(value)
            out: dict = {}
            for key, item in value.items():
                out[self._unique_key(self._apply(key, depth + 1), out)] = self._apply(item, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self._apply(item, depth + 1) for item in value]
        return value

    @staticmethod
    def _unique_key(key: Any, taken: dict) -> Any:
        """Two keys masked to the same text both survive: the later gets ``" (2)"``, ``" (3)"``..."""
        if key not in taken:
            return key
        n = 2
        while f"{key} ({n})" in taken:
            n += 1
        return f"{key} ({n})"


EMPTY_MASK = SecretMask()

# Up to this many forms, plain substring checks (C's fast search) tell quickest that a text holds
# none; beyond, one scan of the finder's pattern does.
_SUBSTRING_CHECKS = 32
# Forms are found by their first characters, then checked whole: the pattern's size (and the time
# `re` takes to compile it) does not grow with the length of the secrets, nor its nesting.
_PREFIX_CHARS = 16


class _FormFinder:
    """Finds every occurrence of a set of forms, overlapping ones included, in one scan.

    A regex over the forms' first ``_PREFIX_CHARS`` characters, folded into a trie (``ab|ac`` ->
    ``a(?:b|c)``) so the engine skips characters no form starts with and steps through the rest a
    character at a time instead of trying every form at every position, finds each position where
    some form may start (with the longest prefix matching there), searching again from the next
    character so that overlapping occurrences are found too; the candidates with that prefix are
    then compared whole, longest first.
    """

    def __init__(self, forms: tuple[str, ...]) -> None:
        self.forms = forms
        by_prefix: dict[str, list[str]] = {}
        for form in forms:  # longest first, so each list is too
            by_prefix.setdefault(form[:_PREFIX_CHARS], []).append(form)
        # A matched prefix p may also start the forms whose own (shorter) prefix is a prefix of p.
        self.candidates = {
            prefix: sorted((f for n in range(1, len(prefix) + 1) for f in by_prefix.get(prefix[:n], ())),
                           key=len, reverse=True)
            for prefix in by_prefix
        }
        self.pattern = re.compile(_trie_regex(sorted(by_prefix)))

    def spans(self, text: str) -> list[list[int]]:
        """Merged ``[start, end)`` spans of every form in ``text``; empty when there is none."""
        if len(self.forms) <= _SUBSTRING_CHECKS:
            if not any(form in text for form in self.forms):
                return []
        elif self.pattern.search(text) is None:
            return []
        spans: list[list[int]] = []
        match = self.pattern.search(text)
        while match is not None:
            start = match.start()
            for form in self.candidates[match.group()]:
                if text.startswith(form, start):
                    end = start + len(form)
                    if spans and start <= spans[-1][1]:
                        spans[-1][1] = max(spans[-1][1], end)
                    else:
                        spans.append([start, end])
                    break
            # The next form may start inside this one (overlapping secrets, base64 interiors).
            match = self.pattern.search(text, start + 1)
        return spans


def _trie_regex(words: list[str]) -> str:
    """One regex matching the longest of the sorted, distinct, non-empty ``words`` at a position."""
    branches = []
    for _, group in groupby(words, key=itemgetter(0)):
        group = list(group)
        prefix = commonprefix(group)
        rest = [word[len(prefix):] for word in group]
        ends_here = rest[0] == ""  # sorted: the empty remainder comes first
        rest = [word for word in rest if word]
        tail = _trie_regex(rest) if rest else ""
        # A word ending here: the longer ones through this node are tried first (greedy `?`).
        branches.append(re.escape(prefix) + (f"(?:{tail})?" if ends_here and tail else tail))
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


class MaskingScope:
    """The secrets resolved so far for the step running in this context."""

    __slots__ = ("_values", "_mask")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._mask = EMPTY_MASK

    @property
    def mask(self) -> SecretMask:
        """The mask of every value added so far (built once after the last addition)."""
        if len(self._mask.values) != len(self._values):
            self._mask = SecretMask(self._values)
        return self._mask

    def add(self, value: str) -> None:
        if isinstance(value, str) and value:
            self._values.add(value)

    def recording(self, resolver: Callable[[str], str]) -> Callable[[str], str]:
        """``resolver``, adding every value it returns to this scope before the step sees it."""

        def resolve(name: str) -> str:
            value = resolver(name)
            self.add(value)
            return value

        return resolve


_ACTIVE: contextvars.ContextVar[MaskingScope | None] = contextvars.ContextVar("flowplane_masking", default=None)


@contextmanager
def masking_scope() -> Iterator[MaskingScope]:
    """While open, ``active_mask()`` in this context is the scope's mask (growing as it records)."""
    scope = MaskingScope()
    token = _ACTIVE.set(scope)
    try:
        yield scope
    finally:
        _ACTIVE.reset(token)


def active_mask() -> SecretMask:
    """The mask of the step running in this context; an empty mask outside any step."""
    scope = _ACTIVE.get()
    return scope.mask if scope is not None else EMPTY_MASK
