"""Operator pages: login required, tenant-scoped (another company's object is a 404), real rows."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from controlplane.deployments.models import DeploymentEvent
from controlplane.executions.models import Execution, ExecutionStatus
from controlplane.fleet.models import Worker
from controlplane.tenancy.models import Company
from controlplane.web import views
from tests.controlplane.executions.builders import edges, job, make_deployment, make_group, make_live_worker
from tests.controlplane.web.runs import compensate_all, run_steps, started
from tests.factories import make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(groups, project, owner):
    """Given acme's workflow `a -> b` deployed to prod (a on ingest, b on load)."""
    return make_deployment(project, [job("a"), job("b", "log", group="load", config={"message": "hi"})],
                           edges(("a", "b")), user=owner)


@pytest.fixture
def other_tenant(outsider):
    """Given globex (the outsider's company) with its own deployment and a run of it."""
    globex = Company.objects.get(slug="globex")
    make_live_worker("globex1@unit", make_group(globex, "ingest"))
    deployment = make_deployment(make_project(globex, "secret-project"), [job("x")], user=outsider)
    return {"user": outsider, "deployment": deployment, "execution": started(deployment, user=outsider)}


def text(response) -> str:
    return response.content.decode()


class TestLoginRequired:
    @pytest.mark.parametrize(
        "url",
        [
            reverse("web:dashboard"),
            reverse("web:execution-list"),
            reverse("web:execution-detail", args=[uuid.uuid4()]),
            reverse("web:deployment-detail", args=[1]),
            reverse("web:fleet"),
        ],
        ids=["dashboard", "execution-list", "execution-detail", "deployment-detail", "fleet"],
    )
    def test_an_anonymous_visitor_is_sent_to_the_login_page(self, client, db, url):
        response = client.get(url)

        assert response.status_code == 302
        assert response["Location"] == f"{settings.LOGIN_URL}?next={url}"

    def test_pages_only_read(self, page_client, owner):
        response = page_client(owner).post(reverse("web:dashboard"))

        assert response.status_code == 405


class TestDashboard:
    def test_a_member_sees_deployments_recent_runs_and_groups_of_their_company(self, page_client, owner, deployment):
        run_steps(started(deployment, user=owner), "a", "b")
        started(deployment, user=owner)
        old = started(deployment, user=owner)
        Execution.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))

        response = page_client(owner).get(reverse("web:dashboard"))

        assert response.status_code == 200
        [entry] = response.context["companies"]
        assert entry["company"].slug == "acme"
        [shown] = entry["deployments"]
        newest_event = DeploymentEvent.objects.filter(deployment=deployment).order_by("-id").first()
        assert (shown.pk, shown.status, shown.last_event_kind) == (deployment.pk, "active", newest_event.kind)
        assert dict(entry["execution_counts"]) == {"running": 1, "succeeded": 1}  # the 2-day-old run is left out
        assert [(g.slug, g.live_workers_count, g.live_concurrency) for g in entry["groups"]] == [
            ("ingest", 1, 1), ("load", 1, 1)]
        body = text(response)
        assert reverse("web:deployment-detail", args=[deployment.pk]) in body
        assert f"v{deployment.version.number}" in body and "wg.acme.ingest" in body

    def test_another_company_is_not_on_the_dashboard(self, page_client, owner, deployment, other_tenant):
        response = page_client(owner).get(reverse("web:dashboard"))

        assert [entry["company"].slug for entry in response.context["companies"]] == ["acme"]
        assert "globex" not in text(response) and "secret-project" not in text(response)

    def test_a_user_without_company_gets_an_empty_dashboard(self, page_client, db):
        from tests.factories import make_user

        response = page_client(make_user("loner")).get(reverse("web:dashboard"))

        assert response.status_code == 200 and response.context["companies"] == []


class TestExecutionList:
    @pytest.fixture
    def runs(self, owner, deployment, project):
        """Given a succeeded and a running run of `deployment`, and a running run of another workflow."""
        other = make_deployment(project, [job("z")], user=owner)
        return {
            "succeeded": run_steps(started(deployment, user=owner), "a", "b"),
            "running": started(deployment, user=owner),
            "other": started(other, user=owner),
        }

    def test_lists_the_callers_runs_newest_first(self, page_client, owner, runs, other_tenant):
        response = page_client(owner).get(reverse("web:execution-list"))

        assert response.status_code == 200
        assert list(response.context["page"]) == [runs["other"], runs["running"], runs["succeeded"]]
        assert str(other_tenant["execution"].pk) not in text(response)

    @pytest.mark.parametrize(
        "query, expected",
        [
            ({"status": "succeeded"}, ["succeeded"]),
            ({"status": "running"}, ["other", "running"]),
            ({"workflow": "deployed"}, ["running", "succeeded"]),
            ({"workflow": "deployed", "status": "running"}, ["running"]),
            ({"status": "failed"}, []),
        ],
        ids=["status", "status-many", "workflow", "workflow-and-status", "nothing-matches"],
    )
    def test_filters_by_status_and_workflow(self, page_client, owner, deployment, runs, query, expected):
        if query.get("workflow") == "deployed":
            query = {**query, "workflow": deployment.workflow_id}

        response = page_client(owner).get(reverse("web:execution-list"), query)

        assert response.status_code == 200
        assert list(response.context["page"]) == [runs[name] for name in expected]

    @pytest.mark.parametrize("query", [{"status": "bogus"}, {"workflow": "999999"}, {"workflow": "x"}],
                             ids=["unknown-status", "unknown-workflow", "not-a-number"])
    def test_an_invalid_filter_is_reported_and_matches_nothing(self, page_client, owner, runs, query):
        response = page_client(owner).get(reverse("web:execution-list"), query)

        assert response.status_code == 200
        assert response.context["form"].errors and list(response.context["page"]) == []

    def test_another_companys_workflow_is_not_a_filter_choice(self, page_client, owner, runs, other_tenant):
        theirs = other_tenant["deployment"].workflow_id

        response = page_client(owner).get(reverse("web:execution-list"), {"workflow": theirs})

        assert "workflow" in response.context["form"].errors and list(response.context["page"]) == []

    def test_pages_keep_the_filter(self, page_client, owner, deployment, runs, monkeypatch):
        monkeypatch.setattr(views, "EXECUTIONS_PER_PAGE", 1)
        query = {"workflow": deployment.workflow_id}

        first = page_client(owner).get(reverse("web:execution-list"), query)
        second = page_client(owner).get(reverse("web:execution-list"), {**query, "page": 2})

        assert list(first.context["page"]) == [runs["running"]]
        assert f"?workflow={deployment.workflow_id}&amp;page=2" in text(first)
        assert list(second.context["page"]) == [runs["succeeded"]] and not second.context["page"].has_next()


class TestExecutionDetail:
    def test_shows_header_timeline_and_events(self, page_client, owner, deployment):
        execution = run_steps(started(deployment, user=owner, input={"n": 1}), "a", "b")

        response = page_client(owner).get(reverse("web:execution-detail", args=[execution.pk]))

        assert response.status_code == 200
        timeline = response.context["timeline"]
        assert [(s["node_id"], s["status"], s["worker"]) for s in timeline["steps"]] == [
            ("a", "succeeded", "ingest1@unit"), ("b", "succeeded", "ingest1@unit")]
        assert [e.type for e in response.context["events"]][0] == "execution.started"
        body = text(response)
        assert execution.version.workflow.slug in body and "succeeded" in body and "manual" in body
        assert reverse("web:deployment-detail", args=[deployment.pk]) in body
        assert "step.completed" in body and "ingest1@unit" in body

    def test_a_failed_run_shows_its_error_and_compensations(self, page_client, owner, groups, project):
        deployment = make_deployment(
            project,
            [job("a", compensate={"type": "noop"}), job("b", "fail", config={"retryable": False})],
            edges(("a", "b")),
            user=owner,
        )
        execution = compensate_all(run_steps(started(deployment, user=owner), "a", "b"))

        response = page_client(owner).get(reverse("web:execution-detail", args=[execution.pk]))

        assert execution.status == ExecutionStatus.COMPENSATED
        assert [(c["node_id"], c["status"]) for c in response.context["timeline"]["compensations"]] == [
            ("a", "succeeded")]
        body = text(response)
        assert "compensated" in body and "saga.compensating" in body and "step.compensated" in body
        assert response.context["timeline"]["error"]["node_id"] == "b"
        assert "failed on purpose" in body  # the error, in the header and in the failed step's row

    def test_output_is_escaped(self, page_client, owner, groups, project):
        deployment = make_deployment(
            project, [job("a", "python", config={"callable": "echo", "kwargs": {"x": "{{ .trigger.x }}"}})], user=owner
        )
        execution = run_steps(started(deployment, user=owner, input={"x": "<script>alert(1)</script>"}), "a")

        body = text(page_client(owner).get(reverse("web:execution-detail", args=[execution.pk])))

        assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body

    def test_another_companys_execution_is_not_found(self, page_client, owner, other_tenant):
        response = page_client(owner).get(reverse("web:execution-detail", args=[other_tenant["execution"].pk]))

        assert response.status_code == 404

    def test_an_unknown_execution_is_not_found(self, page_client, owner):
        response = page_client(owner).get(reverse("web:execution-detail", args=[uuid.uuid4()]))

        assert response.status_code == 404


class TestDeploymentDetail:
    def test_shows_status_jobs_events_and_plan(self, page_client, owner, deployment):
        response = page_client(owner).get(reverse("web:deployment-detail", args=[deployment.pk]))

        assert response.status_code == 200
        assert [jd.job_id for jd in response.context["jobs"]] == ["a", "b"]
        body = text(response)
        digest = deployment.jobs.get(job_id="a").digest.split(":", 1)[-1]
        assert digest[:12] in body
        assert "applied" in body and owner.username in body  # an event and its actor
        plan = response.context["plan"]
        assert plan is not None and plan.text and "<pre>" in body
        assert "active" in body and "Auto-reconcile" in body

    @pytest.mark.parametrize("deployment_id", ["theirs", 999_999, 2**63], ids=["other-tenant", "unknown", "too-big"])
    def test_not_found(self, page_client, owner, other_tenant, deployment_id):
        if deployment_id == "theirs":
            deployment_id = other_tenant["deployment"].pk

        response = page_client(owner).get(reverse("web:deployment-detail", args=[deployment_id]))

        assert response.status_code == 404


class TestFleet:
    def test_shows_the_callers_groups_and_workers(self, page_client, owner, deployment, groups, other_tenant):
        Worker.objects.filter(hostname="ingest1@unit").update(
            loaded_artifacts={f"{deployment.pk}:a": "sha256:x", f"{other_tenant['deployment'].pk}:x": "sha256:y"},
            active_consumers=["wg.acme.ingest", "wg.globex.ingest"],
        )

        response = page_client(owner).get(reverse("web:fleet"))

        assert response.status_code == 200
        assert [g.queue_name for g in response.context["groups"]] == ["wg.acme.ingest", "wg.acme.load"]
        workers = {w["hostname"]: w for w in response.context["workers"]}
        assert set(workers) == {"ingest1@unit", "load1@unit"}
        ingest = workers["ingest1@unit"]
        assert (ingest["live"], ingest["concurrency"], ingest["loaded_artifacts_count"]) == (True, 1, 1)
        assert ingest["active_consumers"] == ["wg.acme.ingest"]
        body = text(response)
        assert "globex" not in body and "ingest1@unit" in body
