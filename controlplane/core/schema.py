"""The OpenAPI schema as the API behaves: paginated lists, every error an operation can answer.

`ApiAutoSchema` (DEFAULT_SCHEMA_CLASS) adds to what drf-spectacular infers from each view:

- pagination: a GET that returns a list (`responses=X(many=True)`) answers one page,
  `{count, next, previous, results}`, with `limit`/`offset` and their bounds
  (`controlplane.core.pagination`), whether the view is a viewset or a plain APIView. A view that
  returns a bare list sets `pagination_class = None`.
- text constraints DRF enforces without a validator spectacular can read: a `CharField` refuses
  NUL characters, and unless `allow_blank` also an empty or all-whitespace value (it trims).
- the error responses, each in the shape of the `Error` component, by what the operation has:
  401 (with its `WWW-Authenticate` challenge) unless it is open to anyone; 403 for a write (a role
  too low, a session without its CSRF token); 400 for a query or header parameter, a body, or a
  write (services refuse by their rules with a 400 too); 404 for a path id,
  a filter or a body naming an object (another tenant's is a 404 too); 409 for a write (a
  duplicate, a state that refuses it); 413 and 415 for a body; 412 with an `If-Match` header,
  and 428 when that header is required.
"""
from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from controlplane.core.pagination import Pagination


class ErrorItemSerializer(serializers.Serializer):
    path = serializers.CharField(allow_blank=True, help_text="Where: `nodes[2].config.url`, a field or a parameter.")
    message = serializers.CharField(help_text="What is wrong and how to fix it.")
    code = serializers.CharField(help_text="A stable code to match on.")


class ErrorSerializer(serializers.Serializer):
    """Every error: `{"error", "detail", "path"}`, `errors` when there are several problems."""

    error = serializers.CharField(help_text="A stable code: `invalid`, `not_found`, `limit_exceeded`, ...")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    path = serializers.CharField(allow_null=True, help_text="Where in the input (field, parameter), or null.")
    errors = ErrorItemSerializer(many=True, required=False, help_text="Every problem found, each with its path.")


WRITES = {"POST", "PUT", "PATCH", "DELETE"}
PAGINATION_PARAMETERS = {"limit", "offset"}

DESCRIPTIONS = {
    400: "Invalid input: a body, parameter or header that does not fit, or a document beyond a limit.",
    401: "No credential, or one that is not valid.",
    403: "Your role in the company is too low for this.",
    404: "No such object, or one of another company.",
    409: "The current state refuses this (a duplicate, a version in use, a stale plan).",
    412: "If-Match names an older revision; the body says the current one.",
    413: "The request body is larger than the server accepts (API_MAX_BODY_BYTES).",
    415: "The body's Content-Type is neither JSON nor YAML.",
    428: "This write needs If-Match with the ETag last read.",
}


# What a DRF CharField accepts: no NUL anywhere and, unless blank is allowed, something besides
# whitespace. ECMA-262 (JSON Schema) syntax.
NO_NUL = "^[^\\x00]*$"
NOT_BLANK = "^[^\\x00]*[^\\s\\x00][^\\x00]*$"


class ApiAutoSchema(AutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and isinstance(field, serializers.CharField) and schema.get("type") == "string":
            if not field.allow_blank:
                schema["minLength"] = max(schema.get("minLength", 0), 1)
            # A regex validator (a slug) becomes the pattern later, and leaves out NUL and blanks.
            if "pattern" not in schema and not any(isinstance(v, RegexValidator) for v in field.validators):
                schema["pattern"] = NO_NUL if field.allow_blank or not field.trim_whitespace else NOT_BLANK
        return schema

    def _get_paginator(self):
        if hasattr(self.view, "pagination_class"):  # viewsets, and views that say so
            return super()._get_paginator()
        return Pagination() if self.method == "GET" else None

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = {"application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}}
        responses = operation["responses"]
        for code in sorted(self._error_codes(operation)):
            response = {"description": DESCRIPTIONS[code], "content": error}
            if code == 401:
                response["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Token realm="api"'}
                }
            responses.setdefault(str(code), response)
        return operation

    def _error_codes(self, operation: dict) -> set[int]:
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        names = {(p["in"], p["name"]) for p in parameters}
        codes: set[int] = set()
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes.add(401)
            if self.method in WRITES:
                codes.add(403)
        succeeds = any(code.startswith("2") for code in operation["responses"])
        # Path ids are matched by the URL (no match: 404), so they alone never 400; a write with no
        # body can still be refused by its service's rules (ApplicationError is a 400 by default).
        if has_body or any(where != "path" for where, _name in names) or (self.method in WRITES and succeeds):
            codes.add(400)
        if has_body or any(where == "path" or (where == "query" and name not in PAGINATION_PARAMETERS)
                           for where, name in names):
            codes.add(404)
        if self.method in WRITES and succeeds:  # an operation that is always refused never conflicts
            codes.add(409)
        if has_body:
            codes.update({413, 415})
        if_match = next((p for p in parameters if p["in"] == "header" and p["name"] == "If-Match"), None)
        if if_match is not None:
            codes.add(412)
            if if_match.get("required"):
                codes.add(428)
        return codes
