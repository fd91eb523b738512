"""The operator pages of issue #13: workflows drawn, plan preview and apply, drift, waterfall, fleet,
dead letters. Tenant-scoped like the API (another company's object is a 404); a viewer sees no
write button and a POST of theirs is a 403; POSTs need the CSRF token."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from controlplane.deployments.models import DeploymentPlan, EventKind, JobDeployment
from controlplane.deployments.services import plan_create
from controlplane.executions.models import DeadLetter, StepRun
from controlplane.tenancy.models import Company, Role
from tests.controlplane.executions.builders import (
    deploy_version,
    edges,
    job,
    make_deployment,
    make_group,
    make_live_worker,
    make_version,
)
from tests.controlplane.web.runs import run_steps, started
from tests.factories import add_member, make_project, make_user

pytestmark = pytest.mark.django_db

NODES = [job("fetch"), job("score", replicas=2), job("announce", "log", group="load", config={"message": "hi"}),
         job("total", group="load", compensate={"type": "noop"})]
EDGES = edges(("fetch", "score"), ("fetch", "announce"), ("score", "total"), ("announce", "total"))


@pytest.fixture
def viewer(company):
    return add_member(company, make_user("vic"), Role.VIEWER)


@pytest.fixture
def v1(groups, project, owner):
    return make_version(project, NODES, EDGES, user=owner)


@pytest.fixture
def workflow(v1):
    return v1.workflow


@pytest.fixture
def v2(workflow, project, owner):
    nodes = [n for n in NODES if n["id"] != "announce"] + [job("report", group="load")]
    nodes = [{**n, "replicas": 3} if n["id"] == "score" else n for n in nodes]
    return make_version(project, nodes, edges(("fetch", "score"), ("score", "total"), ("total", "report")),
                        user=owner, workflow=workflow)


@pytest.fixture
def theirs(outsider):
    globex = Company.objects.get(slug="globex")
    make_live_worker("globex1@unit", make_group(globex, "ingest"))
    deployment = make_deployment(make_project(globex, "secret-project"), [job("x")], user=outsider)
    return {"deployment": deployment, "workflow": deployment.workflow, "execution": started(deployment, user=outsider),
            "plan": DeploymentPlan.objects.filter(workflow=deployment.workflow).first()}


def text(response) -> str:
    return response.content.decode()


def svg_nodes(body: str) -> dict[str, str]:
    """data-node -> its class attribute, from the drawn SVG."""
    return dict((m[1], m[0]) for m in re.findall(r'<g class="([^"]+)" data-node="([^"]+)"', body))


class TestWorkflowPages:
    def test_the_list_shows_the_callers_workflows_only(self, page_client, owner, workflow, theirs):
        body = text(page_client(owner).get(reverse("web:workflow-list")))

        assert reverse("web:workflow-detail", args=[workflow.pk]) in body
        assert "secret-project" not in body and reverse("web:workflow-detail", args=[theirs["workflow"].pk]) not in body

    def test_the_graph_is_drawn_with_groups_replicas_and_compensations(self, page_client, owner, workflow):
        response = page_client(owner).get(reverse("web:workflow-detail", args=[workflow.pk]))

        assert response.status_code == 200
        nodes = svg_nodes(text(response))
        assert set(nodes) == {"fetch", "score", "announce", "total"}
        assert "g0" in nodes["fetch"].split() and "g1" in nodes["total"].split()  # ingest, load
        body = text(response)
        assert re.search(r'data-node="score" data-state="same"\s+data-group="ingest" data-replicas="2"', body)
        assert "×2" in body
        assert "↺ noop" in body
        assert [n.layer for n in response.context["layout"].nodes] == [0, 1, 1, 2]

    def test_version_history_and_an_older_version(self, page_client, owner, workflow, v2):
        response = page_client(owner).get(reverse("web:workflow-detail", args=[workflow.pk]) + "?version=1")

        assert response.context["shown"].number == 1 and "announce" in svg_nodes(text(response))
        assert [v.number for v in response.context["versions"]] == [2, 1]
        assert "?from=1&amp;to=2" in text(response)

    def test_the_diff_colours_added_changed_and_removed_nodes(self, page_client, owner, workflow, v2):
        response = page_client(owner).get(reverse("web:workflow-diff", args=[workflow.pk]) + "?from=1&to=2")

        assert response.status_code == 200
        states = {n.id: n.state for n in response.context["layout"].nodes}
        assert states == {"fetch": "same", "score": "changed", "announce": "removed", "total": "same",
                          "report": "added"}
        nodes = svg_nodes(text(response))
        assert "state-removed" in nodes["announce"] and "state-added" in nodes["report"]

    def test_a_workflow_with_only_a_draft_draws_the_draft(self, page_client, owner, project):
        from tests.factories import make_workflow

        workflow = make_workflow(project, "drafty", user=owner)

        response = page_client(owner).get(reverse("web:workflow-detail", args=[workflow.pk]))

        assert response.status_code == 200 and response.context["shown"] is None
        assert set(svg_nodes(text(response))) == {n["id"] for n in workflow.draft_graph["nodes"]}
        assert "Preview a plan" not in text(response)  # nothing published to plan

    @pytest.mark.parametrize("url", ["web:workflow-detail", "web:workflow-diff", "web:plan-new"])
    def test_another_companys_workflow_is_not_found(self, page_client, owner, workflow, theirs, url):
        assert page_client(owner).get(reverse(url, args=[theirs["workflow"].pk])).status_code == 404

    @pytest.mark.parametrize("query", ["?version=9", "?version=x"], ids=["unknown", "not-a-number"])
    def test_an_unknown_version_is_not_found(self, page_client, owner, workflow, query):
        assert page_client(owner).get(reverse("web:workflow-detail", args=[workflow.pk]) + query).status_code == 404


class TestPlanPreview:
    def preview(self, client, workflow, version=1, environment="prod"):
        return client.post(reverse("web:plan-new", args=[workflow.pk]), {"version": version, "environment": environment})

    def test_an_editor_previews_a_plan_grouped_by_worker_group(self, page_client, owner, workflow):
        response = self.preview(page_client(owner), workflow)

        plan = DeploymentPlan.objects.get(workflow=workflow)
        assert response.status_code == 302 and response["Location"] == reverse("web:plan-detail", args=[plan.pk])
        page = page_client(owner).get(response["Location"])
        blocks = {b.group: [(line.symbol, line.job_id) for line in b.lines] for b in page.context["plan_groups"]}
        assert blocks == {"ingest": [("+", "fetch"), ("+", "score")], "load": [("+", "announce"), ("+", "total")]}
        body = text(page)
        assert 'class="line create" data-job="score"' in body and "2 replicas" in body
        assert 'id="apply-form"' in body and "csrfmiddlewaretoken" in body

    def test_changes_show_old_and_new_values_and_disruptive_moves(self, page_client, owner, workflow, v1, v2):
        deploy_version(v1, user=owner)
        plan = plan_create(workflow=workflow, version=v2, environment="prod", placement={"fetch": "load"}, user=owner)

        page = page_client(owner).get(reverse("web:plan-detail", args=[plan.pk]))

        lines = {line.job_id: line for b in page.context["plan_groups"] for line in b.lines}
        assert {j: line.symbol for j, line in lines.items()} == {
            "announce": "-", "fetch": "~", "report": "+", "score": "~", "total": "~"}  # total: its inputs changed
        assert [(v.path, v.old, v.new) for v in lines["score"].values] == [("replicas", "2", "3")]
        assert lines["fetch"].disruptive and (lines["fetch"].moved_from, lines["fetch"].moved_to) == ("ingest", "load")
        assert {b.group for b in page.context["plan_groups"] if any(x.job_id == "announce" for x in b.lines)} == {"load"}
        body = text(page)
        assert 'class="disruptive"' in body and "moves ingest → load (disruptive)" in body
        assert '<span class="old">2</span> → <span class="new">3</span>' in body

    def test_a_plan_without_changes_says_so(self, page_client, owner, workflow, v1):
        deploy_version(v1, user=owner)
        plan = plan_create(workflow=workflow, version=v1, environment="prod", user=owner)

        page = page_client(owner).get(reverse("web:plan-detail", args=[plan.pk]))

        assert "No changes. The deployment matches this version." in text(page)
        assert [b.unchanged for b in page.context["plan_groups"]] == [2, 2]

    def test_errors_are_shown_with_their_paths_and_there_is_no_apply(self, page_client, owner, workflow, project):
        broken = make_version(project, [job("a", group="gpu")], user=owner, workflow=workflow)
        self.preview(page_client(owner), workflow, version=broken.number)

        plan = DeploymentPlan.objects.get(workflow=workflow)
        page = page_client(owner).get(reverse("web:plan-detail", args=[plan.pk]))

        assert plan.has_errors and 'id="apply-form"' not in text(page)
        [error] = page.context["plan_errors"]
        assert f'<span class="path">{error["path"]}</span>' in text(page) and "unknown_group" in text(page)

    def test_apply_applies_exactly_that_plan(self, page_client, owner, workflow):
        self.preview(page_client(owner), workflow)
        plan = DeploymentPlan.objects.get(workflow=workflow)

        response = page_client(owner).post(reverse("web:plan-apply", args=[plan.pk]))

        plan.refresh_from_db()
        deployment = plan.workflow.deployments.get()
        assert plan.applied_at is not None and deployment.version.number == 1
        assert response["Location"] == reverse("web:deployment-detail", args=[deployment.pk])
        assert set(JobDeployment.objects.filter(deployment=deployment).values_list("job_id", flat=True)) == {
            j["job_id"] for j in plan.plan["jobs"]}

    def test_a_stale_plan_is_a_plain_409_and_applies_nothing(self, page_client, owner, workflow, v1):
        first, second = (plan_create(workflow=workflow, version=v1, environment="prod", user=owner) for _ in range(2))
        page_client(owner).post(reverse("web:plan-apply", args=[first.pk]))

        response = page_client(owner).post(reverse("web:plan-apply", args=[second.pk]))

        assert response.status_code == 409
        body = text(response)
        assert "409 Conflict: this plan went stale and was not applied." in body and "stale_plan" in body
        second.refresh_from_db()
        assert second.applied_at is None

    def test_a_viewer_sees_plans_without_buttons_and_cannot_post(self, page_client, owner, viewer, workflow, v1):
        plan = plan_create(workflow=workflow, version=v1, environment="prod", user=owner)
        client = page_client(viewer)

        page = client.get(reverse("web:plan-detail", args=[plan.pk]))
        form = client.get(reverse("web:plan-new", args=[workflow.pk]))

        assert page.status_code == 200 and 'id="apply-form"' not in text(page) and "Apply" not in text(page)
        assert 'id="plan-form"' not in text(form)
        assert client.post(reverse("web:plan-apply", args=[plan.pk])).status_code == 403
        assert self.preview(client, workflow).status_code == 403
        plan.refresh_from_db()
        assert plan.applied_at is None and DeploymentPlan.objects.filter(workflow=workflow).count() == 1

    def test_another_companys_plan_is_not_found(self, page_client, owner, theirs):
        client = page_client(owner)

        assert client.get(reverse("web:plan-detail", args=[theirs["plan"].pk])).status_code == 404
        assert client.post(reverse("web:plan-apply", args=[theirs["plan"].pk])).status_code == 404

    def test_apply_needs_the_csrf_token(self, owner, workflow, v1):
        plan = plan_create(workflow=workflow, version=v1, environment="prod", user=owner)
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)

        assert client.post(reverse("web:plan-apply", args=[plan.pk])).status_code == 403
        plan.refresh_from_db()
        assert plan.applied_at is None


class TestDeploymentPage:
    @pytest.fixture
    def deployment(self, v1, owner):
        return deploy_version(v1, user=owner)

    def test_the_current_plan_is_at_the_top_and_events_are_paginated(self, page_client, owner, deployment):
        from controlplane.deployments.services.events import deployment_event

        for n in range(30):
            deployment_event(deployment, EventKind.WARNING, actor=None, data={"n": n})
        response = page_client(owner).get(reverse("web:deployment-detail", args=[deployment.pk]))

        body = text(response)
        assert body.index("Current plan") < body.index("<h2>Jobs</h2>") < body.index("<h2>Events</h2>")
        assert 'class="line create" data-job="fetch"' in body
        assert len(response.context["events"]) == 25 and response.context["events"].has_next()
        older = page_client(owner).get(reverse("web:deployment-detail", args=[deployment.pk]) + "?page=2")
        assert not older.context["events"].has_next() and len(older.context["events"]) == older.context[
            "events_total"] - 25

    def test_drift_is_listed_and_an_editor_accepts_it(self, page_client, owner, deployment):
        JobDeployment.objects.filter(deployment=deployment, job_id="fetch").update(spec={"edited": "by hand"})

        page = page_client(owner).get(reverse("web:deployment-detail", args=[deployment.pk]))
        drift_ids = [d["id"] for d in page.context["drift"] if d["kind"] == "spec_edited"]
        assert drift_ids == ["spec_edited:ingest:fetch:"] and f'data-drift="{drift_ids[0]}"' in text(page)
        assert "Revert all drift" in text(page)

        response = page_client(owner).post(reverse("web:drift-action", args=[deployment.pk, "accept"]),
                                           {"drift": drift_ids[0]})

        assert response.status_code == 302
        assert deployment.events.filter(kind=EventKind.DRIFT_ACCEPTED).count() == 1
        after = page_client(owner).get(reverse("web:deployment-detail", args=[deployment.pk]))
        assert not [d for d in after.context["drift"] if d["kind"] == "spec_edited"]

    def test_revert_restores_the_edited_spec(self, page_client, owner, deployment):
        original = JobDeployment.objects.get(deployment=deployment, job_id="fetch").spec
        JobDeployment.objects.filter(deployment=deployment, job_id="fetch").update(spec={"edited": "by hand"})

        page_client(owner).post(reverse("web:drift-action", args=[deployment.pk, "revert"]))

        assert JobDeployment.objects.get(deployment=deployment, job_id="fetch").spec == original

    def test_a_viewer_gets_no_drift_buttons_and_a_403(self, page_client, viewer, deployment):
        JobDeployment.objects.filter(deployment=deployment, job_id="fetch").update(spec={"edited": "by hand"})
        client = page_client(viewer)

        body = text(client.get(reverse("web:deployment-detail", args=[deployment.pk])))

        assert "spec_edited" in body and "Revert all drift" not in body and ">Accept<" not in body
        for action in ("accept", "revert"):
            assert client.post(reverse("web:drift-action", args=[deployment.pk, action]),
                               {"drift": "spec_edited:ingest:fetch:"}).status_code == 403
        assert not deployment.events.filter(kind=EventKind.DRIFT_ACCEPTED).exists()

    def test_another_companys_drift_is_not_found(self, page_client, owner, theirs):
        url = reverse("web:drift-action", args=[theirs["deployment"].pk, "revert"])
        assert page_client(owner).post(url).status_code == 404


class TestExecutionPage:
    @pytest.fixture
    def finished(self, groups, project, owner):
        nodes = [{**n, "replicas": 1} for n in NODES]  # run_steps runs shard 0 of 1
        execution = run_steps(started(make_deployment(project, nodes, EDGES, user=owner), user=owner),
                              "fetch", "score", "announce", "total")
        t0 = timezone.now() - timedelta(minutes=1)
        spans = {"fetch": (0, 100), "score": (100, 400), "announce": (100, 200), "total": (400, 1000)}
        for node_id, (a, b) in spans.items():
            StepRun.objects.filter(execution=execution, node_id=node_id).update(
                started_at=t0 + timedelta(milliseconds=a), finished_at=t0 + timedelta(milliseconds=b))
        type(execution).objects.filter(pk=execution.pk).update(started_at=t0, finished_at=t0 + timedelta(seconds=1))
        return execution

    def test_the_waterfall_draws_bars_in_proportion_in_graph_order(self, page_client, owner, finished):
        response = page_client(owner).get(reverse("web:execution-detail", args=[finished.pk]))

        assert finished.status == "succeeded"
        bars = [(b.node_id, b.left, b.width) for b in response.context["waterfall"].bars]
        assert [b[0] for b in bars] == [s["node_id"] for s in response.context["timeline"]["steps"]]
        assert dict((n, (left, width)) for n, left, width in bars) == {
            "fetch": (0.0, 10.0), "score": (10.0, 30.0), "announce": (10.0, 10.0), "total": (40.0, 60.0)}
        body = text(response)
        assert 'data-step="score" data-shard="0"' in body and "left: 10%; width: 30%" in body
        assert "<details>" in body and 'class="step-output"' in body
        assert not response.context["live"] and "poll.js" not in body

    def test_a_running_execution_polls_its_progress(self, page_client, owner, v1):
        execution = started(deploy_version(v1, user=owner), user=owner)
        client = page_client(owner)

        body = text(client.get(reverse("web:execution-detail", args=[execution.pk])))
        progress = client.get(reverse("web:execution-progress", args=[execution.pk])).json()

        assert "web/poll.js" in body and reverse("web:execution-progress", args=[execution.pk]) in body
        assert progress["status"] == "running" and progress["finished"] is False and progress["last_seq"] >= 1

    def test_another_companys_progress_is_not_found(self, page_client, owner, theirs):
        url = reverse("web:execution-progress", args=[theirs["execution"].pk])
        assert page_client(owner).get(url).status_code == 404


class TestFleetAndDeadLetters:
    def test_fleet_shows_capacity_against_replicas(self, page_client, owner, v1):
        deploy_version(v1, user=owner)

        response = page_client(owner).get(reverse("web:fleet"))

        rows = {r["group"].slug: r for r in response.context["group_rows"]}
        assert (rows["ingest"]["widest"], rows["ingest"]["total"], rows["ingest"]["jobs"]) == (2, 3, 2)
        assert "short: 1 slot for 2 replicas" in text(response)

    @pytest.fixture
    def letter(self, groups, project, owner):
        deployment = make_deployment(project, [job("a"), job("b", "fail", config={"retryable": False})],
                                     edges(("a", "b")), user=owner)
        run_steps(started(deployment, user=owner), "a", "b")
        return DeadLetter.objects.get()

    def test_dead_letters_are_listed_and_an_editor_replays_one(self, page_client, owner, letter, theirs):
        body = text(page_client(owner).get(reverse("web:dead-letter-list")))
        assert f'data-dead-letter="{letter.pk}"' in body and "failed on purpose" in body

        response = page_client(owner).post(reverse("web:dead-letter-replay", args=[letter.pk]))

        letter.refresh_from_db()
        assert letter.replay_execution_id is not None
        assert response["Location"] == reverse("web:execution-detail", args=[letter.replay_execution_id])

    def test_a_viewer_cannot_replay_and_another_company_cannot_see(self, page_client, viewer, outsider, letter):
        body = text(page_client(viewer).get(reverse("web:dead-letter-list")))
        assert "editors replay" in body
        assert page_client(viewer).post(reverse("web:dead-letter-replay", args=[letter.pk])).status_code == 403
        assert f'data-dead-letter="{letter.pk}"' not in text(page_client(outsider).get(reverse("web:dead-letter-list")))
        assert page_client(outsider).post(reverse("web:dead-letter-replay", args=[letter.pk])).status_code == 404
