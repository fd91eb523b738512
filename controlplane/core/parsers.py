"""Request parsers: JSON and YAML bodies, both read within the API's document limits.

A body beyond a limit (depth, values, YAML aliases: `controlplane.core.limits`) is a 400
`limit_exceeded` naming the limit and where it was crossed; YAML aliases are budgeted while the
document is composed, so a "billion laughs" body costs a millisecond, not a worker.
"""
from __future__ import annotations

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

from controlplane.core.limits import document_limits, limit_exceeded
from pipelines.document_limits import check_value, load_yaml
from pipelines.errors import DocumentLimitError


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limits = document_limits()
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:  # the decoder's own guard, far beyond API_MAX_DOCUMENT_DEPTH
            raise limit_exceeded(limits.refuse("max_depth", "", f"nested deeper than {limits.max_depth} levels; flatten the body"))
        try:
            check_value(data, limits)
        except DocumentLimitError as exc:
            raise limit_exceeded(exc)
        return data


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            # Dates load as dates, so the shape checks refuse them with their path: JSON has none.
            return load_yaml(stream.read().decode("utf-8"), document_limits(), dates_as_text=False)
        except DocumentLimitError as exc:
            raise limit_exceeded(exc)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ParseError(f"YAML parse error{where}: {exc}") from exc
