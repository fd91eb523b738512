"""The approvals inbox: what the signed-in user may decide, with approve / reject buttons and the
approval's input form, and the decisions taken in their companies lately.

The form is drawn from the approval's `input_schema`: one field per top-level property of a
simple type (string, with `enum` a choice; number, integer, boolean), else one JSON text area.
Deciding posts to `approval_decide`, the API's own service, so its rules are the API's (approvers,
four eyes, input checked against the schema: a refusal comes back as a message naming the path).
"""
from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from controlplane.approvals import selectors
from controlplane.approvals.models import ApprovalStatus
from controlplane.approvals.services import approval_decide
from controlplane.core.errors import ApplicationError
from controlplane.web.lookups import or_404

SIMPLE_TYPES = ("string", "number", "integer", "boolean")
RECENT_SHOWN = 20


def form_fields(schema: dict | None) -> list[dict[str, Any]] | None:
    """The input form's fields, or None when the schema needs the JSON text area."""
    if not schema:
        return []
    properties = schema.get("properties")
    if schema.get("type", "object") != "object" or not isinstance(properties, dict):
        return None
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in properties.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind not in SIMPLE_TYPES:
            return None
        fields.append({"name": name, "type": kind, "required": name in required, "enum": prop.get("enum"),
                       "title": prop.get("title") or name, "description": prop.get("description", "")})
    return fields


def _input_from_form(post, schema: dict | None) -> Any:
    fields = form_fields(schema)
    if fields is None:
        text = post.get("input_json", "").strip()
        try:
            return json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise ApplicationError(f"the input is no JSON: {exc}", code="invalid_input", path="input") from None
    data: dict[str, Any] = {}
    for field in fields:
        name, raw = field["name"], post.get(f"input.{field['name']}", "")
        if field["type"] == "boolean":
            data[name] = raw == "on"
            continue
        if raw == "":
            continue
        try:
            data[name] = int(raw) if field["type"] == "integer" else float(raw) if field["type"] == "number" else raw
        except ValueError:
            raise ApplicationError(f"input.{name}: {raw!r} is not a {field['type']}", code="invalid_input",
                                   path=f"input.{name}") from None
    return data


@require_safe
@login_required
def approval_inbox(request: HttpRequest) -> HttpResponse:
    mine = selectors.approval_list(user=request.user, mine=True)
    pending = [{"approval": a, "fields": form_fields(a.input_schema)} for a in mine]
    recent = (selectors.approval_list(user=request.user).exclude(status=ApprovalStatus.PENDING)
              .order_by("-decided_at")[:RECENT_SHOWN])
    return render(request, "web/approvals.html", {"pending": pending, "recent": recent})


@require_POST
@login_required
def approval_decide_action(request: HttpRequest, approval_id: int) -> HttpResponse:
    approval = or_404(selectors.approval_get, user=request.user, approval_id=approval_id)
    decision = request.POST.get("decision", "")
    try:
        data = _input_from_form(request.POST, approval.input_schema) if decision == "approve" else None
        approval_decide(approval=approval, user=request.user, decision=decision,
                        comment=request.POST.get("comment", ""), input=data)
    except ApplicationError as error:  # not an approver, decided already, bad input: said plainly
        messages.error(request, f"{approval.node_id}: {decision or 'decision'} refused: {error.detail}")
        return redirect("web:approval-inbox")
    done = "approved: the run carries on" if decision == "approve" else "rejected: the run compensates"
    messages.success(request, f"Approval {approval.node_id} of run {str(approval.execution_id)[:8]} {done}.")
    return redirect("web:approval-inbox")
