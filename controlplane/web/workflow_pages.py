"""Workflow pages: the list, one workflow drawn as SVG with its version history, and a version diff
drawn on the graph. Read-only; the layout is computed server-side by `pipelines.graph_layout`."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from controlplane.tenancy.access import role_in
from controlplane.tenancy.models import Role
from controlplane.web import selectors as pages
from controlplane.web.actions import workflow_buttons
from controlplane.web.lookups import or_404
from controlplane.workflows.selectors import version_by_number, version_diff, version_list, workflow_get
from pipelines.graph_layout import layout_diff, layout_graph


def _workflow(request: HttpRequest, workflow_id: int):
    return or_404(workflow_get, user=request.user, workflow_id=workflow_id)


def _number(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Http404(f"{name} must be a version number") from None


def _version(request: HttpRequest, workflow, number: int):
    return or_404(version_by_number, user=request.user, workflow=workflow, number=number)


def _is_editor(role: Role | None) -> bool:
    return bool(role and role.at_least(Role.EDITOR))


@require_safe
@login_required
def workflow_list(request: HttpRequest) -> HttpResponse:
    return render(request, "web/workflow_list.html", {"rows": pages.workflow_rows(user=request.user)})


@require_safe
@login_required
def workflow_detail(request: HttpRequest, workflow_id: int) -> HttpResponse:
    """Version `?version=N` (the latest by default; the draft when nothing is published) drawn."""
    workflow = _workflow(request, workflow_id)
    versions = list(version_list(user=request.user, workflow=workflow))
    number = _number(request, "version")
    if number is not None:
        shown = _version(request, workflow, number)
    else:
        shown = versions[-1] if versions else None
    graph = shown.graph if shown is not None else workflow.draft_graph
    role = role_in(request.user, workflow.project.company_id)
    return render(request, "web/workflow_detail.html", {
        "workflow": workflow,
        "versions": list(reversed(versions)),
        "shown": shown,
        "layout": layout_graph(graph),
        "deployments": pages.workflow_deployments(user=request.user, workflow=workflow),
        "can_plan": _is_editor(role),
        "actions": workflow_buttons(workflow, role),
    })


@require_safe
@login_required
def workflow_diff(request: HttpRequest, workflow_id: int) -> HttpResponse:
    """`?from=N&to=M` (the two latest versions by default), drawn as one graph with the changes coloured."""
    workflow = _workflow(request, workflow_id)
    versions = list(version_list(user=request.user, workflow=workflow))
    if len(versions) < 1:
        raise Http404("this workflow has no published version to compare")
    to_number = _number(request, "to") or versions[-1].number
    from_number = _number(request, "from") or max(to_number - 1, 1)
    older, newer = _version(request, workflow, from_number), _version(request, workflow, to_number)
    diff = version_diff(older=older, newer=newer)
    return render(request, "web/workflow_diff.html", {
        "workflow": workflow,
        "versions": versions,
        "older": older,
        "newer": newer,
        "diff": diff,
        "layout": layout_diff(older.graph, newer.graph, diff),
    })
