"""The plan preview: pick a version and an environment, see the plan by worker group, apply it.

Making a preview and applying it are the API's `POST /plans` and `POST /plans/{id}/apply` on a
page, with the role those routes need (editor); a viewer sees plans but no button, and a POST of
theirs is a 403. Apply applies exactly the stored plan: when the deployment moved on since, the
service's 409 `stale_plan` comes back as the plan page with status 409 and the reason in plain
words, and nothing is applied.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from controlplane.core.errors import ApplicationError, NotFound, PermissionDenied
from controlplane.deployments import selectors as deployments
from controlplane.deployments import services as deployment_services
from controlplane.tenancy.access import require_role, role_in
from controlplane.tenancy.models import Role
from controlplane.web import selectors as pages
from controlplane.web.forms import PlanForm
from controlplane.web.lookups import or_404
from controlplane.web.plan_lines import plan_groups
from controlplane.workflows.selectors import version_by_number, workflow_get


def _require_editor(user, company_id: int, what: str) -> None:
    try:
        require_role(user, company_id, Role.EDITOR, what=what)
    except NotFound as error:
        raise Http404(error.detail) from None
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.detail) from None


def _is_editor(user, company_id: int) -> bool:
    role = role_in(user, company_id)
    return bool(role and role.at_least(Role.EDITOR))


def plan_context(plan) -> dict:
    """What the plan partial (`web/_plan.html`) draws."""
    return {
        "plan": plan,
        "plan_groups": plan_groups(plan.plan, deployed_groups=pages.deployed_job_groups(plan.workflow, plan.environment)),
        "plan_errors": plan.plan.get("errors", []),
        "plan_warnings": plan.plan.get("warnings", []),
        "plan_has_changes": any(c["action"] != "noop" for c in plan.plan.get("changes", ())),
    }


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def plan_new(request: HttpRequest, workflow_id: int) -> HttpResponse:
    workflow = or_404(workflow_get, user=request.user, workflow_id=workflow_id)
    company_id = workflow.project.company_id
    if request.method != "POST":
        form = PlanForm(workflow=workflow, user=request.user, initial=request.GET.dict() or None)
        return render(request, "web/plan_new.html", {
            "workflow": workflow, "form": form, "can_plan": _is_editor(request.user, company_id)})
    _require_editor(request.user, company_id, "workflow")
    form = PlanForm(request.POST, workflow=workflow, user=request.user)
    if not form.is_valid():
        return render(request, "web/plan_new.html", {"workflow": workflow, "form": form, "can_plan": True}, status=400)
    version = version_by_number(user=request.user, workflow=workflow, number=form.cleaned_data["version"])
    try:
        plan = deployment_services.plan_create(
            workflow=workflow, version=version, environment=form.cleaned_data["environment"], user=request.user)
    except ApplicationError as error:
        form.add_error(None, f"{error.path or 'plan'}: {error.detail}")
        return render(request, "web/plan_new.html", {"workflow": workflow, "form": form, "can_plan": True},
                      status=error.status_code)
    return redirect("web:plan-detail", plan_id=plan.pk)


def _plan(request: HttpRequest, plan_id):
    return or_404(deployments.plan_get, user=request.user, plan_id=plan_id)


def _render_plan(request, plan, *, refusal: str = "", status: int = 200) -> HttpResponse:
    company_id = plan.workflow.project.company_id
    applicable = plan.applied_at is None and not plan.has_errors
    return render(request, "web/plan_detail.html", {
        **plan_context(plan),
        "workflow": plan.workflow,
        "can_apply": applicable and _is_editor(request.user, company_id),
        "refusal": refusal,
        "refusal_status": status,
        "current": deployments.current_deployment(plan.workflow, plan.environment),
    }, status=status)


@require_safe
@login_required
def plan_detail(request: HttpRequest, plan_id) -> HttpResponse:
    return _render_plan(request, _plan(request, plan_id))


@require_POST
@login_required
def plan_apply(request: HttpRequest, plan_id) -> HttpResponse:
    plan = _plan(request, plan_id)
    _require_editor(request.user, plan.workflow.project.company_id, "plan")
    try:
        deployment = deployment_services.plan_apply(plan=plan, user=request.user)
    except ApplicationError as error:  # stale_plan (409), plan_has_errors (400)
        plan.refresh_from_db()
        return _render_plan(request, plan, refusal=f"{error.code}: {error.detail}", status=error.status_code)
    messages.success(request, f"Plan applied: {plan.summary}. Deployment #{deployment.pk} is at revision "
                              f"{deployment.revision}.")
    return redirect("web:deployment-detail", deployment_id=deployment.pk)
