"""The operator pages draw a map node: a stack with a ∀ badge naming its child step."""
from __future__ import annotations

import pytest
from django.urls import reverse

from tests.controlplane.executions.builders import edges, job, make_deployment

pytestmark = pytest.mark.django_db


def test_the_workflow_graph_marks_a_map_node_with_its_child_step(groups, project, owner, page_client):
    deployment = make_deployment(project, [
        job("discover", "jq", config={"program": "[1, 2]"}),
        job("each", "map", config={"items": "{{ .steps.discover.output }}",
                                   "step": {"type": "log", "config": {"message": "{{ .item }}"}}}),
    ], edges(("discover", "each")), user=owner)

    body = page_client(owner).get(reverse("web:workflow-detail", args=[deployment.workflow_id])).content.decode()

    assert 'data-map="log"' in body and "runs log once per item" in body and "∀" in body
    assert body.count('data-map="') == 1
