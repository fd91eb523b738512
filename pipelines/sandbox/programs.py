"""What a tenant's jq program becomes before anything compiles it.

Every program is compiled as ``PRELUDE + program``. The prelude shadows the builtins that
reach outside the data (the process environment, the input file name, the module system's
search paths and metadata) and binds ``$ENV`` to ``{}``; because it comes first, module
directives (``import``, ``include``, ``module``) in the program are no longer at the start of
the text and jq refuses them as a syntax error before it would look for any file. That makes
the prelude the gate; ``module_directive`` only gives the author a clearer message.

The prelude is one line, so a program's own lines are numbered one higher than the author
wrote them; ``author_message`` numbers them back.
"""

from __future__ import annotations

import re

PRELUDE = (
    "def env: {}; "
    "def input_filename: null; "
    "def get_search_list: []; "
    "def get_jq_origin: null; "
    "def get_prog_origin: null; "
    'def modulemeta: error("modulemeta is not available: jq runs sandboxed, without modules"); '
    "{} as $ENV |\n"
)

_DIRECTIVE = re.compile(r"(import|include|module)\b")
_LINE = re.compile(r"\bline (\d+)\b")

# A path of fields and constant indexes (`.steps.fetch.output.items[0]."a-b"`, optionally `?`).
# No string escapes, so no interpolation; nothing that iterates, recurses or builds.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STRING = r'"[^"\\]*"'
_INDEX = rf"\[\s*(?:-?[0-9]{{1,18}}|{_STRING})\s*\]"
_FIRST = rf"\.(?:{_IDENT}|{_STRING}|{_INDEX})\??"
_NEXT = rf"(?:\.{_IDENT}|\.{_STRING}|\.?{_INDEX})\??"
_PATH = re.compile(rf"\s*(?:\.|{_FIRST}(?:\s*{_NEXT})*)\s*")


def sandboxed(program: str) -> str:
    """The text that is compiled for ``program``."""
    return PRELUDE + program


def module_directive(program: str) -> str | None:
    """``"import"``, ``"include"`` or ``"module"`` when the program opens with one, else None.

    Skips whitespace and comments the way jq 1.7 lexes them: a comment runs to the end of the
    line, and a backslash inside it escapes the next character, a newline included.
    """
    i, n = 0, len(program)
    while i < n:
        ch = program[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            i += 1
            while i < n and program[i] != "\n":
                i += 2 if program[i] == "\\" else 1
        else:
            break
    match = _DIRECTIVE.match(program, i)
    return match.group(1) if match else None


def is_bounded_path(program: str) -> bool:
    """True for a program that only follows a path of fields and constant indexes.

    Such a program reads at most one value per step of the path: its time is linear in the
    size of its input and it allocates nothing beyond the parsed input, and it names no
    builtin, so it can run in the calling process without a budget or a sandbox process.
    """
    return _PATH.fullmatch(program) is not None


def author_message(message: str) -> str:
    """A jq compile message with line numbers as the author counts them (without the prelude)."""
    return _LINE.sub(lambda m: f"line {max(1, int(m.group(1)) - 1)}", message)
