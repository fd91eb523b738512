"""Server-rendered operator pages: read-only views over the tenant-scoped selectors.

Each view parses its query, calls selectors, and renders a template; none writes (the few write
buttons post to `controlplane.web.actions`). Objects of a company the caller is not a member of
are a 404, exactly as in the API (the selectors raise `NotFound`, turned into `Http404` here).
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from controlplane.core.errors import NotFound
from controlplane.deployments import selectors as deployments
from controlplane.executions import selectors as executions
from controlplane.fleet.selectors import worker_group_list
from controlplane.tenancy.access import role_in
from controlplane.tenancy.selectors import is_db_id
from controlplane.web import selectors as pages
from controlplane.web.actions import DEPLOYMENT_ACTIONS, EXECUTION_ACTIONS, allowed
from controlplane.web.forms import ExecutionFilterForm

T = TypeVar("T")

EXECUTIONS_PER_PAGE = 50
EVENTS_SHOWN = 500


def _or_404(select: Callable[..., T], **kwargs: Any) -> T:
    try:
        return select(**kwargs)
    except NotFound as error:
        raise Http404(error.detail) from None


@require_safe
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "web/dashboard.html", {"companies": pages.dashboard(user=request.user)})


@require_safe
@login_required
def execution_list(request: HttpRequest) -> HttpResponse:
    form = ExecutionFilterForm(request.GET, user=request.user)
    if form.is_valid():
        queryset = executions.execution_list(
            user=request.user, status=form.cleaned_data["status"] or None, workflow_id=form.cleaned_data["workflow"]
        ).select_related("deployment")
    else:
        queryset = executions.execution_list(user=request.user).none()
    page = Paginator(queryset, EXECUTIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "web/execution_list.html", {"form": form, "page": page})


@require_safe
@login_required
def execution_detail(request: HttpRequest, execution_id) -> HttpResponse:
    execution = _or_404(executions.execution_get, user=request.user, execution_id=execution_id)
    events = list(executions.execution_events(execution=execution, limit=EVENTS_SHOWN + 1))
    return render(
        request,
        "web/execution_detail.html",
        {
            "execution": execution,
            "timeline": executions.execution_timeline(execution=execution),
            "events": events[:EVENTS_SHOWN],
            "events_truncated": len(events) > EVENTS_SHOWN,
            "events_shown": EVENTS_SHOWN,
            "actions": allowed(EXECUTION_ACTIONS, role_in(request.user, execution.company_id)),
        },
    )


@require_safe
@login_required
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    if not is_db_id(deployment_id):  # digits no bigint holds name nothing (and must not reach SQL)
        raise Http404("deployment not found")
    deployment = _or_404(deployments.deployment_get, user=request.user, deployment_id=deployment_id)
    events = deployments.deployment_events(deployment=deployment)
    return render(
        request,
        "web/deployment_detail.html",
        {
            "deployment": deployment,
            "accepts_executions": deployments.deployment_accepts_executions(deployment),
            "jobs": deployments.deployment_jobs(deployment),
            "events": events.reverse()[:EVENTS_SHOWN],  # newest first
            "events_total": events.count(),
            "events_shown": EVENTS_SHOWN,
            "plan": deployments.last_applied_plan(deployment),
            "actions": allowed(DEPLOYMENT_ACTIONS, role_in(request.user, deployment.workflow.project.company_id)),
        },
    )


@require_safe
@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return render(
        request,
        "web/fleet.html",
        {"groups": worker_group_list(user=request.user), "workers": pages.fleet_workers(user=request.user, now=now)},
    )
