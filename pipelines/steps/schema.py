"""Step config schemas as JSON Schema (draft 2020-12), checked with ``jsonschema``.

A step type's schema describes its config as ``run`` receives it. Two kinds of value in a graph
stand for something filled in later and are judged by what they will become:

- a string holding a ``{{ jq }}`` template passes anywhere: the engine checks the rendered
  config again before ``run``;
- a secret reference ``{"$secret": name}`` passes wherever text is accepted (a string without
  an ``enum``, or any value) and is refused elsewhere; a malformed one (``{"$secret": 1}``,
  or one with other keys) is refused inside free-form values too.

``config_issues`` turns ``jsonschema``'s errors into the ``Issue`` list the API returns: the
path of the offending value (``config.headers.X``), ``missing_config`` for an absent required
key and ``invalid_config`` for everything else. Validators are compiled once per step type
(``StepType._compiled``): the engine checks a step's config on every run.

A config nested deeper (or holding more values) than ``CONFIG_LIMITS`` is refused before the
schema sees it, with the limit's own code: the checks walk it, and so would the step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators

from pipelines import errors as E
from pipelines.document_limits import DEFAULT_LIMITS, DocumentLimits, check_value
from pipelines.errors import DocumentLimitError, Issue
from pipelines.secrets import is_secret_ref, malformed_ref_issue, malformed_secret_refs
from pipelines.templating import has_template
from pipelines.value_types import TYPE_CHECKER, article, json_type

DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONFIG_LIMITS: DocumentLimits = DEFAULT_LIMITS
TEMPLATES_NOTE = ("Any value may instead be a string holding a {{ jq }} template (checked again once "
                  'rendered), and any text a secret reference {"$secret": "<name>"}.')
_SHORT = 120
_VERDICT_KEY_CHARS = 2048  # with _VERDICTS_MAX, bounds what is kept to some megabytes
_VERDICTS_MAX = 2048
# (id(checker or field validator), path, repr(value)) -> (it, issues); it is kept so its id
# cannot be reused by another while the entry lives.
_VERDICTS: dict[tuple[int, str, str], tuple[Any, tuple[Issue, ...]]] = {}

ConfigValidator = validators.extend(Draft202012Validator, type_checker=TYPE_CHECKER)


def config_schema(type_name: str, description: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a config written as a ``Field`` table."""
    return {
        "$schema": DIALECT,
        "title": f"config of step type {type_name!r}",
        "description": f"{description} {TEMPLATES_NOTE}".strip(),
        "type": "object",
        "properties": {key: spec.json_schema() for key, spec in fields.items()},
        "required": [key for key, spec in fields.items() if spec.required],
        "additionalProperties": False,
    }


@dataclass(frozen=True, eq=False)
class ConfigChecker:
    """A config schema compiled for checking: ``shell`` checks the object itself (required and
    unknown keys), ``fields`` each declared key's value; both share the root's resolver."""

    schema: Mapping[str, Any]
    shell: Draft202012Validator
    fields: Mapping[str, Draft202012Validator]
    shell_sees_keys_only: bool  # the shell's verdict depends on the set of keys alone
    order: Mapping[str, int]  # declared key -> its position, the order issues are listed in
    free_form: frozenset[str]  # declared keys whose values may hold mappings (and references)


def compile_schema(schema: Mapping[str, Any]) -> ConfigChecker:
    """A checker for ``schema``; raises ``jsonschema.SchemaError`` if it is no valid schema.

    Checking field by field lets a config whose one templated value changed from run to run
    reuse the remembered verdicts of its other values.
    """
    ConfigValidator.check_schema(schema)
    root = ConfigValidator(schema)
    properties = schema.get("properties") or {}
    shell = root.evolve(schema={**schema, "properties": {key: True for key in properties}})
    fields = {key: root.evolve(schema=prop) for key, prop in properties.items()}
    keys_only = set(schema) <= _KEYS_ONLY_KEYWORDS and isinstance(schema.get("additionalProperties", False), bool)
    return ConfigChecker(schema=schema, shell=shell, fields=fields, shell_sees_keys_only=keys_only,
                         order={key: i for i, key in enumerate(properties)},
                         free_form=frozenset(k for k, prop in properties.items() if _free_form(prop)))


# Root keywords of a schema whose shell checks only which keys a config has (and that it is an
# object, which the caller made sure of): its verdict can be remembered by the key set.
_KEYS_ONLY_KEYWORDS = frozenset({"$schema", "title", "description", "type", "properties", "required",
                                 "additionalProperties"})


def config_issues(checker: ConfigChecker, config: dict, path: str, type_name: str) -> list[Issue]:
    """Every problem of ``config`` (a dict) under ``checker``: unknown keys first (sorted),
    then each declared key's problems in declaration order.

    The verdict on a small config, and on each of its values, is remembered (``_VERDICTS``):
    the engine checks the same configs run after run, and ``jsonschema`` costs tens of
    microseconds per config where a dictionary look-up costs one. ``repr`` is the key because
    it tells ``1`` from ``1.0`` and ``True``, and a list from a tuple, as the type checks do;
    it runs after the limits check, which bounds the depth it recurses to.
    """
    try:
        check_value(config, CONFIG_LIMITS, path=path)
    except DocumentLimitError as exc:
        return list(exc.issues)
    if not _within(config, _VERDICT_KEY_CHARS):
        return _config_issues(checker, config, path, type_name, remember=False)
    return list(_remembered(checker, path, config, lambda: _config_issues(checker, config, path, type_name)))


def _remembered(owner: Any, path: str, value: Any, compute, remember: bool = True) -> tuple[Issue, ...]:
    """``compute()``'s issues for ``value`` (a small value: see ``_within``) checked by
    ``owner`` at ``path``, remembered unless ``remember`` is false."""
    if not remember:
        return tuple(compute())
    key = (id(owner), path, repr(value))
    verdict = _VERDICTS.get(key)
    if verdict is None or verdict[0] is not owner:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()  # cheaper than LRU bookkeeping; refilled by the next few runs
        verdict = (owner, tuple(compute()))
        _VERDICTS[key] = verdict
    return verdict[1]


def _within(value: Any, budget: int) -> bool:
    """Whether ``value``'s strings and values add up to at most ``budget`` characters, found
    without reading more than ``budget`` of them (a huge config is not worth a cache key)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            budget -= len(item)
        elif isinstance(item, dict):
            budget -= len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            budget -= len(item)
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return False
    return True


def _config_issues(checker: ConfigChecker, config: dict, path: str, type_name: str, *,
                   remember: bool = True) -> list[Issue]:
    properties = checker.schema.get("properties") or {}
    issues: list[Issue] = []
    checked: dict[str, Any] = {}
    for key, value in config.items():
        prop = properties.get(key)
        if prop is None:
            checked[key] = value  # unknown: the schema reports it
        elif has_template(value):
            continue
        elif is_secret_ref(value):
            if not _accepts_text(prop):
                issues.append(_secret_issue(f"{path}.{key}", repr(key), prop))
        elif key in checker.free_form and (malformed := malformed_secret_refs(value, f"{path}.{key}")):
            issues.extend(malformed_ref_issue(p) for p in malformed)
        else:
            checked[key] = value
    seen_missing: set[str] = set()

    def shell_issues() -> list[Issue]:
        return [issue for error in checker.shell.iter_errors(checked)
                for issue in _translate(error, [], config, path, type_name, seen_missing, properties)]

    if checker.shell_sees_keys_only:
        # Keyed by the config's keys and which of them the schema looks at (an exempt value,
        # a template say, still counts as present for `required`).
        shape = (tuple(sorted(config)), tuple(sorted(checked)))
        issues.extend(_remembered(checker.shell, path, shape, shell_issues, remember))
    else:
        issues.extend(shell_issues())
    for key, value in checked.items():
        field = checker.fields.get(key)
        if field is not None:
            issues.extend(_remembered(field, path, value, lambda: [
                issue for error in field.iter_errors(value)
                for issue in _translate(error, [key], config, path, type_name, seen_missing, properties)],
                remember))
    if len(issues) < 2:
        return issues
    return sorted(issues, key=lambda issue: _rank(issue.path, path, checker.order))


def _translate(error, prefix: list, config: dict, path: str, type_name: str, seen_missing: set[str],
               properties: Mapping[str, Any]) -> list[Issue]:
    rel = prefix + list(error.absolute_path)
    where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rel)
    label = repr(".".join(str(p) for p in rel))
    instance, keyword, expected = error.instance, error.validator, error.validator_value
    if rel and has_template(instance):
        return []  # rendered at run time, and checked again then
    if rel and is_secret_ref(instance) and keyword in ("type", "enum", "const"):
        return [] if _accepts_text(error.schema) else [_secret_issue(where, label, error.schema)]
    if keyword == "required":
        out = []
        for key in expected:
            key_path = f"{where}.{key}"
            if key in instance or key_path in seen_missing or (not rel and key in config):
                continue
            seen_missing.add(key_path)
            prop = (properties if not rel else error.schema.get("properties") or {}).get(key, {})
            owner = f"step type {type_name!r}" if not rel else f"config {label}"
            out.append(Issue(key_path, f"{owner} requires config {key!r} ({_type_name(prop)})",
                             E.MISSING_CONFIG))
        return out
    if keyword == "additionalProperties" and expected is False:
        known_keys = error.schema.get("properties") or {}
        patterns = error.schema.get("patternProperties") or {}
        known = ", ".join(sorted(known_keys)) or "none"
        extras = sorted(k for k in instance if k not in known_keys
                        and not any(re.search(p, k) for p in patterns))
        where_unknown = f"for step type {type_name!r}" if not rel else f"in config {label}"
        return [Issue(f"{where}.{key}", f"unknown config {key!r} {where_unknown}; known keys: {known}",
                      E.INVALID_CONFIG) for key in extras]
    return [Issue(where, _message(keyword, expected, instance, label, error.message), E.INVALID_CONFIG)]


def _message(keyword: str, expected: Any, instance: Any, label: str, fallback: str) -> str:
    if keyword == "type":
        return f"config {label} must be {_type_words({'type': expected})}, got {json_type(instance)}"
    if keyword == "enum":
        allowed = ", ".join(repr(c) for c in expected if c is not None)
        return f"config {label} is {_short(instance)}; choose one of {allowed}"
    if keyword == "maxLength":
        return f"config {label} is {len(instance)} characters long; the limit is {expected}"
    if keyword == "minimum":
        return f"config {label} is {instance}; it must be >= {expected:g}"
    if keyword == "maximum":
        return f"config {label} is {instance}; it must be <= {expected:g}"
    return f"config {label}: {_clip(fallback)}"


def _type_words(schema: Any) -> str:
    """``"an integer"``, ``"a string or an array"``, ``"any value"``: what ``schema`` admits."""
    names = schema.get("type") if isinstance(schema, Mapping) else None
    if names is None:
        return "any value"
    names = [names] if isinstance(names, str) else [n for n in names if n != "null"]
    return " or ".join(article(n) for n in names) or "null"


def _type_name(schema: Any) -> str:
    """The declared type of a property, as a ``Field`` names it (``string``, ``any``)."""
    names = schema.get("type") if isinstance(schema, Mapping) else None
    names = [names] if isinstance(names, str) else [n for n in names or () if n != "null"]
    return "/".join(names) or "any"


def _accepts_text(schema: Any) -> bool:
    """Whether a secret reference (text at run time) may stand where ``schema`` applies."""
    if not isinstance(schema, Mapping):
        return schema is True
    if "enum" in schema or "const" in schema:
        return False
    names = schema.get("type")
    return names is None or names == "string" or (isinstance(names, list) and "string" in names)


def _free_form(schema: Mapping[str, Any]) -> bool:
    """Whether values under ``schema`` may hold mappings, where references can hide."""
    names = schema.get("type")
    names = [names] if isinstance(names, str) else names
    return names is None or "object" in names or "array" in names


def _secret_issue(where: str, label: str, schema: Any) -> Issue:
    if isinstance(schema, Mapping) and "enum" in schema:
        allowed = ", ".join(repr(c) for c in schema["enum"] if c is not None)
        return Issue(where, f"config {label} must be one of {allowed}; a secret cannot be checked "
                            "against them, write the value itself", E.INVALID_CONFIG)
    return Issue(where, f"config {label} must be {_type_words(schema)}; a secret reference stands "
                        "for text, write the value itself", E.INVALID_CONFIG)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str):
        return text if len(text) <= _SHORT else text[:_SHORT] + "..."
    return repr(text) if len(text) <= _SHORT else repr(text[:_SHORT]) + f"... ({len(text)} chars)"


def _clip(text: str) -> str:
    return text if len(text) <= 2 * _SHORT else text[: 2 * _SHORT] + "..."


def _rank(issue_path: str, root: str, order: Mapping[str, int]) -> tuple:
    rest = issue_path[len(root) + 1:] if issue_path.startswith(root + ".") else ""
    key = re.split(r"[.\[]", rest, maxsplit=1)[0] if rest else ""
    if key in order:
        return (1, order[key])
    return (0, key) if key else (2, "")
