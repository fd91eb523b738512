"""Server-rendered operator pages: read-only views over the tenant-scoped selectors.

Each view parses its query, calls selectors, and renders a template; none writes (the few write
buttons post to `controlplane.web.actions`). Objects of a company the caller is not a member of
are a 404, exactly as in the API (the selectors raise `NotFound`, turned into `Http404` here).
"""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from controlplane.deployments import selectors as deployments
from controlplane.deployments.services import deployment_drift
from controlplane.executions import selectors as executions
from controlplane.executions.models import TERMINAL_EXECUTION_STATUSES
from controlplane.fleet.selectors import worker_group_list
from controlplane.tenancy.access import role_in
from controlplane.tenancy.models import Role
from controlplane.tenancy.selectors import is_db_id
from controlplane.web import selectors as pages
from controlplane.web.actions import DEPLOYMENT_ACTIONS, EXECUTION_ACTIONS, allowed
from controlplane.web.forms import ExecutionFilterForm
from controlplane.web.lookups import or_404
from controlplane.web.plan_pages import plan_context
from controlplane.web.waterfall import waterfall


EXECUTIONS_PER_PAGE = 50
EVENTS_SHOWN = 500
DEPLOYMENT_EVENTS_PER_PAGE = 25
DEAD_LETTERS_PER_PAGE = 50
POLL_MS = 1500  # how often a running execution's page asks whether it moved on


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
    execution = or_404(executions.execution_get, user=request.user, execution_id=execution_id)
    events = list(executions.execution_events(execution=execution, limit=EVENTS_SHOWN + 1))
    timeline = executions.execution_timeline(execution=execution)
    return render(
        request,
        "web/execution_detail.html",
        {
            "execution": execution,
            "timeline": timeline,
            "waterfall": waterfall(timeline, now=timezone.now()),
            "live": execution.status not in TERMINAL_EXECUTION_STATUSES,
            "last_seq": execution.event_seq,
            "poll_ms": POLL_MS,
            "events": events[:EVENTS_SHOWN],
            "events_truncated": len(events) > EVENTS_SHOWN,
            "events_shown": EVENTS_SHOWN,
            "actions": allowed(EXECUTION_ACTIONS, role_in(request.user, execution.company_id)),
        },
    )


@require_safe
@login_required
def execution_progress(request: HttpRequest, execution_id) -> JsonResponse:
    """What the execution page polls while the run goes: its status and newest event's seq."""
    execution = or_404(executions.execution_get, user=request.user, execution_id=execution_id)
    return JsonResponse({
        "execution": str(execution.pk),
        "status": execution.status,
        "finished": execution.status in TERMINAL_EXECUTION_STATUSES,
        "last_seq": execution.event_seq,
    })


@require_safe
@login_required
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    if not is_db_id(deployment_id):  # digits no bigint holds name nothing (and must not reach SQL)
        raise Http404("deployment not found")
    deployment = or_404(deployments.deployment_get, user=request.user, deployment_id=deployment_id)
    events = deployments.deployment_events(deployment=deployment).reverse()  # newest first
    page = Paginator(events, DEPLOYMENT_EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    plan = deployments.last_applied_plan(deployment)
    role = role_in(request.user, deployment.workflow.project.company_id)
    return render(
        request,
        "web/deployment_detail.html",
        {
            "deployment": deployment,
            "accepts_executions": deployments.deployment_accepts_executions(deployment),
            "jobs": deployments.deployment_jobs(deployment),
            "events": page,
            "events_total": page.paginator.count,
            "events_shown": EVENTS_SHOWN,
            **(plan_context(plan) if plan else {"plan": None}),
            "drift": deployment_drift(deployment, probe=False),  # heartbeats only: a page load sends no broadcast
            "actions": allowed(DEPLOYMENT_ACTIONS, role),
            "can_edit": bool(role and role.at_least(Role.EDITOR)),
        },
    )


@require_safe
@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    groups = list(worker_group_list(user=request.user))
    capacity = pages.group_capacity(groups)
    rows = [{"group": g, **capacity.get(g.pk, {"widest": 0, "total": 0, "jobs": 0})} for g in groups]
    return render(
        request,
        "web/fleet.html",
        {"groups": groups, "group_rows": rows, "workers": pages.fleet_workers(user=request.user, now=now)},
    )


@require_safe
@login_required
def dead_letter_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") if request.GET.get("status") in ("pending", "replayed") else None
    letters = executions.dead_letter_list(user=request.user, status=status).select_related(
        "execution__company", "execution__version__workflow", "replay_execution")
    page = Paginator(letters, DEAD_LETTERS_PER_PAGE).get_page(request.GET.get("page"))
    editor_of = {
        company_id for company_id in {letter.execution.company_id for letter in page}
        if (role := role_in(request.user, company_id)) and role.at_least(Role.EDITOR)
    }
    return render(request, "web/dead_letters.html", {"page": page, "status": status or "", "editor_of": editor_of})
