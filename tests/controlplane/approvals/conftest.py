"""Fixtures of the approvals tests: acme's groups with live worker rows (no processes), and a run
waiting at its approval (what the services publish is recorded instead of sent to a broker)."""
from __future__ import annotations

import pytest

from controlplane.executions.models import Execution
from controlplane.executions.services import execution_start
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.controlplane.executions.conftest import _deploy_settings, groups  # noqa: F401  (fixtures)

FORM = {"type": "object", "required": ["ticket"], "additionalProperties": False,
        "properties": {"ticket": {"type": "string", "minLength": 5, "maxLength": 20}, "note": {"type": "string"}}}


def approval_job(**config):
    return job("ok", "approval", config={"approvers": {"roles": ["admin"]}, "prompt": "Ship {{ .trigger.what }}?",
                                         "input_schema": FORM, **config})


@pytest.fixture
def publishes(monkeypatch):
    published = []
    monkeypatch.setattr("controlplane.executions.dispatch.build_signature",
                        lambda execution_id, canvas, queues: type("P", (), {
                            "apply_async": lambda self: published.append(canvas)})())
    # The stand-in is no canvas: publish it without recording task ids (`dispatch.publish`).
    monkeypatch.setattr("controlplane.executions.dispatch.publish", lambda execution_id, signature: signature.apply_async())
    return published


@pytest.fixture
def waiting(groups, project, owner, django_capture_on_commit_callbacks, publishes):
    """Given a run that stopped at its approval: ok (admins decide) -> apply, with apply compensable."""
    def start(user=owner, **config):
        deployment = make_deployment(project, [approval_job(**config), job("apply", compensate={"type": "noop"})],
                                     edges(("ok", "apply")), user=owner)
        with django_capture_on_commit_callbacks(execute=True):
            execution, _ = execution_start(deployment=deployment, input={"what": "v2"}, user=user)
        return Execution.objects.get(pk=execution.pk)
    return start
