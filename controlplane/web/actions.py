"""The write actions of the operator pages: the API's own services behind POST-only buttons.

Each action is the page form of one API route and needs the role that route needs (the table
below copies the API's: `controlplane/deployments/api.py` and `controlplane/executions/api.py`;
`tests/controlplane/web/test_actions.py` checks both answer alike for every role). Another
company's object is a 404 and a role too low a 403, as in the API; a refused transition (pausing a
paused deployment) comes back to the page as a message. Success redirects to the object's page,
so a reload never repeats the action.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from controlplane.core.errors import ApplicationError, NotFound, PermissionDenied
from controlplane.deployments import selectors as deployment_selectors
from controlplane.deployments import services as deployment_services
from controlplane.executions import selectors as execution_selectors
from controlplane.executions import services as execution_services
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.tenancy.selectors import is_db_id
from controlplane.web.lookups import or_404
from controlplane.workflows import operations as workflow_operations
from controlplane.workflows import selectors as workflow_selectors
from controlplane.workflows import services as workflow_services
from controlplane.workflows.models import WorkflowStatus


@dataclass(frozen=True)
class Action:
    label: str
    minimum: Role  # the role the API route of this action needs
    run: Callable[..., Any]
    done: str  # the message after it worked


DEPLOYMENT_ACTIONS = {
    "pause": Action("Pause", Role.EDITOR, deployment_services.deployment_pause, "paused: new executions are refused"),
    "resume": Action("Resume", Role.EDITOR, deployment_services.deployment_resume, "resumed"),
}
EXECUTION_ACTIONS = {
    "cancel": Action("Cancel", Role.EDITOR, execution_services.execution_cancel, "cancelled"),
    "replay": Action("Replay", Role.EDITOR, execution_services.execution_replay, "replayed as a new execution"),
}


def allowed(actions: dict[str, Action], role: str | None) -> list[tuple[str, Action]]:
    """The actions a caller of `role` may take, to show as buttons (the POST checks again)."""
    if not role:
        return []
    return [(name, action) for name, action in actions.items() if Role(role).at_least(action.minimum)]


def _perform(request: HttpRequest, action: Action, company_id: int, what: str, **target) -> Any:
    try:
        require_role(request.user, company_id, action.minimum, what=what)
        return action.run(user=request.user, **target)
    except NotFound as error:
        raise Http404(error.detail) from None
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.detail) from None


def _act_on_deployment(request: HttpRequest, deployment, chosen: Action, done: str, **target) -> HttpResponse:
    """Run `chosen` on `deployment`, say how it went, and go back to the deployment's page."""
    try:
        _perform(request, chosen, deployment.workflow.project.company_id, "deployment", deployment=deployment, **target)
        messages.success(request, done)
    except ApplicationError as error:  # a refused transition, e.g. pausing a paused deployment
        messages.error(request, f"{chosen.label} refused: {error.detail}")
    return redirect("web:deployment-detail", deployment_id=deployment.pk)


@require_POST
@login_required
def deployment_action(request: HttpRequest, deployment_id: int, action: str) -> HttpResponse:
    if action not in DEPLOYMENT_ACTIONS or not is_db_id(deployment_id):
        raise Http404("no such deployment action")
    deployment = or_404(deployment_selectors.deployment_get, user=request.user, deployment_id=deployment_id)
    chosen = DEPLOYMENT_ACTIONS[action]
    return _act_on_deployment(request, deployment, chosen, f"Deployment #{deployment.pk} {chosen.done}.")


@require_POST
@login_required
def execution_action(request: HttpRequest, execution_id, action: str) -> HttpResponse:
    if action not in EXECUTION_ACTIONS:
        raise Http404("no such execution action")
    execution = or_404(execution_selectors.execution_get, user=request.user, execution_id=execution_id)
    chosen = EXECUTION_ACTIONS[action]
    try:
        result = _perform(request, chosen, execution.company_id, "execution", execution=execution)
    except ApplicationError as error:
        messages.error(request, f"{chosen.label} refused: {error.detail}")
        return redirect("web:execution-detail", execution_id=execution.pk)
    messages.success(request, f"Execution {execution.pk} {chosen.done}.")
    return redirect("web:execution-detail", execution_id=result.pk)  # a replay lands on the new run


def _revert_drift(*, deployment, user):
    """Revert every drift: the API's `reconcile` with `dry_run: false` (heartbeats and a probe)."""
    return deployment_services.deployment_reconcile(deployment=deployment, dry_run=False, user=user)


DRIFT_ACTIONS = {
    "accept": Action("Accept", Role.EDITOR, deployment_services.drift_accept, "kept the drift as the desired state"),
    "revert": Action("Revert all drift", Role.EDITOR, _revert_drift, "reconciled: drift reverted"),
}


@require_POST
@login_required
def drift_action(request: HttpRequest, deployment_id: int, action: str) -> HttpResponse:
    """`accept` one drift (its id in the form's `drift`) or `revert` them all, as the API's
    `accept-drift` and `reconcile` routes do, with their role (editor)."""
    if action not in DRIFT_ACTIONS or not is_db_id(deployment_id):
        raise Http404("no such drift action")
    deployment = or_404(deployment_selectors.deployment_get, user=request.user, deployment_id=deployment_id)
    chosen = DRIFT_ACTIONS[action]
    target = {"drift": request.POST.get("drift", "")} if action == "accept" else {}
    return _act_on_deployment(request, deployment, chosen, f"Deployment #{deployment.pk}: {chosen.done}.", **target)


@require_POST
@login_required
def dead_letter_replay(request: HttpRequest, dead_letter_id: int) -> HttpResponse:
    """The API's `POST /dead-letters/{id}/replay` (editor): the failed run continues, or a from_step replay starts."""
    letter = or_404(execution_selectors.dead_letter_get, user=request.user, dead_letter_id=dead_letter_id)
    chosen = Action("Replay", Role.EDITOR, execution_services.dead_letter_replay, "replayed")
    try:
        replay = _perform(request, chosen, letter.execution.company_id, "dead letter", dead_letter=letter)
    except ApplicationError as error:
        messages.error(request, f"Replay refused: {error.detail}")
        return redirect("web:dead-letter-list")
    how = "its run continues" if replay.continued else "as a new execution"
    messages.success(request, f"Dead letter {letter.pk} {chosen.done}: {how}.")
    return redirect("web:execution-detail", execution_id=replay.execution.pk)


def _set_status(status: str) -> Callable[..., Any]:
    def run(*, user, workflow):  # the API's POST /workflows/{id}/status {status}
        return workflow_services.workflow_set_status(user=user, workflow=workflow, status=status)
    return run


def _clone(*, user, workflow, name: str = ""):
    return workflow_operations.workflow_clone(user=user, workflow=workflow, name=name or f"{workflow.name} copy")


WORKFLOW_ACTIONS = {
    "pause": Action("Pause", Role.EDITOR, _set_status(WorkflowStatus.PAUSED), "paused: it starts no runs"),
    "resume": Action("Resume", Role.EDITOR, _set_status(WorkflowStatus.ACTIVE), "active: it starts runs again"),
    "archive": Action("Archive", Role.EDITOR, _set_status(WorkflowStatus.ARCHIVED),
                      "archived: no new versions and no runs"),
    "clone": Action("Clone", Role.EDITOR, _clone, "cloned into a new draft"),
}
# Which status buttons make sense in which status (the service refuses the others anyway).
_WORKFLOW_ACTIONS_BY_STATUS = {
    WorkflowStatus.DRAFT: ("archive", "clone"),
    WorkflowStatus.ACTIVE: ("pause", "archive", "clone"),
    WorkflowStatus.PAUSED: ("resume", "archive", "clone"),
    WorkflowStatus.ARCHIVED: ("resume", "clone"),
}


def workflow_buttons(workflow, role: str | None) -> list[tuple[str, Action]]:
    shown = _WORKFLOW_ACTIONS_BY_STATUS.get(workflow.status, ())
    return [(name, action) for name, action in allowed(WORKFLOW_ACTIONS, role) if name in shown]


@require_POST
@login_required
def workflow_action(request: HttpRequest, workflow_id: int, action: str) -> HttpResponse:
    """Pause, resume, archive (the API's status route) or clone (`name` from the form) a workflow."""
    if action not in WORKFLOW_ACTIONS or not is_db_id(workflow_id):
        raise Http404("no such workflow action")
    workflow = or_404(workflow_selectors.workflow_get, user=request.user, workflow_id=workflow_id)
    chosen = WORKFLOW_ACTIONS[action]
    target = {"name": request.POST.get("name", "").strip()[:200]} if action == "clone" else {}
    try:
        result = _perform(request, chosen, workflow.project.company_id, "workflow", workflow=workflow, **target)
    except ApplicationError as error:
        messages.error(request, f"{chosen.label} refused: {error.detail}")
        return redirect("web:workflow-detail", workflow_id=workflow.pk)
    messages.success(request, f"Workflow {workflow.slug} {chosen.done}.")
    return redirect("web:workflow-detail", workflow_id=result.pk)  # a clone lands on the new workflow
