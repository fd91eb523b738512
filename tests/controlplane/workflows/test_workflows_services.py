"""Workflow services: draft revisions, publishing (numbering, idempotency, concurrency)."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from controlplane.core.errors import ApplicationError, PreconditionFailed
from controlplane.workflows.models import Workflow, WorkflowStatus, WorkflowVersion
from controlplane.workflows.services import workflow_create, workflow_publish, workflow_update_draft
from pipelines.graph import graph_digest
from tests.factories import make_company, make_project, make_user, valid_graph


def fresh(workflow) -> Workflow:
    return Workflow.objects.get(pk=workflow.pk)


@pytest.mark.django_db
def test_each_draft_write_bumps_the_revision(workflow, owner):
    updated = workflow_update_draft(user=owner, workflow=workflow, expected_revision=1, name="Renamed")
    updated = workflow_update_draft(user=owner, workflow=updated, expected_revision=2, graph=valid_graph(message="x"))
    assert updated.draft_revision == 3
    with pytest.raises(PreconditionFailed) as stale:
        workflow_update_draft(user=owner, workflow=updated, expected_revision=2, name="Late")
    assert stale.value.extra == {"current_revision": 3}


@pytest.mark.django_db
def test_publish_stores_the_digest_of_the_canonical_graph(workflow, owner):
    version, created = workflow_publish(user=owner, workflow=workflow)
    assert created
    assert (version.number, version.digest, version.graph) == (1, graph_digest(valid_graph()), valid_graph())
    assert version.published_by == owner
    assert fresh(workflow).status == WorkflowStatus.ACTIVE


@pytest.mark.django_db
def test_a_draft_reverted_to_an_earlier_graph_returns_that_version(workflow, owner):
    v1, _ = workflow_publish(user=owner, workflow=workflow)
    workflow_update_draft(user=owner, workflow=workflow, expected_revision=1, graph=valid_graph(message="two"))
    v2, _ = workflow_publish(user=owner, workflow=fresh(workflow))
    workflow_update_draft(user=owner, workflow=fresh(workflow), expected_revision=2, graph=valid_graph())

    again, created = workflow_publish(user=owner, workflow=fresh(workflow))

    assert (v1.number, v2.number) == (1, 2)
    assert (again, created) == (v1, False)
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 2


@pytest.mark.django_db
def test_publish_refuses_an_invalid_draft_with_issue_paths(workflow, owner):
    workflow_update_draft(
        user=owner, workflow=workflow, expected_revision=1, graph={"nodes": [{"id": "a", "type": "nope"}]}
    )
    with pytest.raises(ApplicationError) as refused:
        workflow_publish(user=owner, workflow=fresh(workflow))
    assert refused.value.code == "invalid_graph"
    assert [(e["path"], e["code"]) for e in refused.value.errors] == [("nodes[0].type", "unknown_step_type")]


@pytest.mark.django_db
def test_version_numbers_are_per_workflow(project, owner):
    a = workflow_create(user=owner, project=project, slug="a", name="A", graph=valid_graph())
    b = workflow_create(user=owner, project=project, slug="b", name="B", graph=valid_graph())
    assert workflow_publish(user=owner, workflow=a)[0].number == 1
    assert workflow_publish(user=owner, workflow=b)[0].number == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_get_one_version_and_consecutive_numbers():
    # given a workflow and eight publishers starting at once, half with one graph and half with another
    owner = make_user("racer")
    project = make_project(make_company("race", owner=owner), "p")
    workflow = workflow_create(user=owner, project=project, slug="w", name="W", graph=valid_graph())
    barrier = threading.Barrier(8)
    results, errors = [], []

    def publish(index: int):
        try:
            barrier.wait(timeout=10)
            if index % 2:
                try:
                    workflow_update_draft(
                        user=owner, workflow=fresh(workflow), expected_revision=None, graph=valid_graph(message="odd")
                    )
                except ApplicationError:
                    pass
            results.append(workflow_publish(user=owner, workflow=fresh(workflow)))
        except Exception as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then every publish succeeded, and the numbers run 1..n without gaps or duplicates
    assert not errors, errors
    assert len(results) == 8
    numbers = sorted(WorkflowVersion.objects.filter(workflow=workflow).values_list("number", flat=True))
    assert numbers == list(range(1, len(numbers) + 1))
    assert len({v.digest for v, _ in results}) == len(numbers)


@pytest.mark.django_db
def test_a_protected_delete_becomes_a_409_naming_the_dependents(workflow, owner):
    from controlplane.core.errors import Conflict
    from controlplane.tenancy.services import delete_or_conflict

    workflow_publish(user=owner, workflow=workflow)
    with pytest.raises(Conflict) as refused:
        delete_or_conflict(fresh(workflow), what="workflow")
    assert refused.value.code == "has_dependents"
    assert "workflow versions" in refused.value.detail
    assert Workflow.objects.filter(pk=workflow.pk).exists()
