"""Steps run the artifact their run was pinned to (issue 10), without workers.

Given a deployed workflow, apply stores every rendered spec in the write-once artifact store and a
run's graph names each job's digest; a step runs that artifact's spec from this process's cache
(no query when held) or from the store (checked against its digest). A re-apply does not change
what a run pinned earlier executes; a tampered or missing row fails the step, not retried.
"""
from __future__ import annotations

import json

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from controlplane.deployments.artifact_cache import cache
from controlplane.deployments.artifacts import artifact_loaded
from controlplane.deployments.models import Artifact, ArtifactImmutable, JobDeployment, artifact_key
from controlplane.deployments.services import artifacts_store, desired_artifacts, drift_accept
from controlplane.executions.models import Execution, ExecutionStatus, StepRun, StepStatus
from controlplane.executions.services import (
    Delivery, compensation_execute, execution_start, saga_start, step_execute,
)
from controlplane.executions.store import _PINNED_CACHE
from controlplane.fleet.models import Worker
from pipelines.planner import spec_digest
from tests.controlplane.executions.builders import edges, job, make_deployment
from tests.factories import make_company

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest",
                    request={"id": "t-1", "task": "flowplane.step"})


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def say(message: str, node_id: str = "a") -> dict:
    return job(node_id, "log", config={"message": message})


def start(deployment, owner):
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)
    return execution


def step(execution, node_id="a"):
    return step_execute(execution_id=execution.pk, node_id=node_id, shard=0, shard_count=1, delivery=DELIVERY)


def attempt(execution, node_id="a") -> StepRun:
    return StepRun.objects.filter(execution=execution, node_id=node_id, is_compensation=False).latest("attempt")


def store_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if 'FROM "deployments_artifact"' in q["sql"]]


def tamper(digest: str, spec: dict | None) -> None:
    """What a superuser could do in SQL: bypass the trigger and change (or delete) a stored row."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # user triggers do not fire
        try:
            if spec is None:
                cursor.execute("DELETE FROM deployments_artifact WHERE digest = %s", [digest])
            else:
                cursor.execute("UPDATE deployments_artifact SET spec = %s::jsonb WHERE digest = %s",
                               [json.dumps(spec), digest])
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


class TestStore:
    def test_apply_stores_every_rendered_job_once_under_its_digest(self, groups, project, owner, company):
        deployment = make_deployment(project, [say("hi"), job("b", group="load")], edges(("a", "b")), user=owner)

        jobs = list(JobDeployment.objects.filter(deployment=deployment))
        stored = {a.digest: a for a in Artifact.objects.all()}
        assert len(jobs) == 2 and set(stored) == {jd.digest for jd in jobs}
        for jd in jobs:
            assert stored[jd.digest].spec == jd.spec and stored[jd.digest].company_id == company.pk
            assert spec_digest(stored[jd.digest].spec) == jd.digest

    def test_the_same_spec_is_the_same_row_and_a_changed_one_adds_a_row(self, groups, project, owner):
        first = make_deployment(project, [say("v1"), job("b", group="load")], edges(("a", "b")), user=owner)
        rows = set(Artifact.objects.values_list("pk", "digest"))

        make_deployment(project, [say("v1"), job("b", group="load")], edges(("a", "b")), user=owner)  # another
        # workflow rendering the same jobs
        assert set(Artifact.objects.values_list("pk", "digest")) == rows

        make_deployment(project, [say("v2"), job("b", group="load")], edges(("a", "b")), user=owner,
                        workflow=first.workflow)
        after = set(Artifact.objects.values_list("pk", "digest"))
        assert rows < after and len(after) == len(rows) + 1  # the old digest stays for runs pinned to it

    def test_artifacts_are_per_tenant(self, groups, project, owner, company):
        make_deployment(project, [say("hi")], user=owner)
        mine = Artifact.objects.get()
        other = make_company("globex")

        artifacts_store(company_id=other.pk, jobs=[{"job_id": "a", "digest": mine.digest, "spec": mine.spec}])

        assert sorted(Artifact.objects.filter(digest=mine.digest).values_list("company_id", flat=True)) == sorted(
            [company.pk, other.pk])

    def test_the_process_that_stored_an_artifact_can_run_it_with_no_query(self, company):
        spec = {"type": "noop", "config": {}}
        artifacts_store(company_id=company.pk, jobs=[{"job_id": "a", "digest": spec_digest(spec), "spec": spec}])
        assert cache.spec(spec_digest(spec)) == spec

    def test_a_spec_that_does_not_hash_to_its_digest_is_not_stored(self, company):
        with pytest.raises(ValueError, match="hashes to"):
            artifacts_store(company_id=company.pk, jobs=[{"job_id": "a", "digest": "sha256:0", "spec": {"type": "noop"}}])
        assert not Artifact.objects.exists()

    def test_a_stored_artifact_cannot_be_changed_or_deleted(self, groups, project, owner):
        make_deployment(project, [say("hi")], user=owner)
        row = Artifact.objects.get()
        applied = row.spec

        row.spec = {"type": "log", "config": {"message": "edited"}}
        with pytest.raises(ArtifactImmutable):
            row.save()
        with pytest.raises(ArtifactImmutable):
            row.delete()
        with pytest.raises(ArtifactImmutable):
            Artifact.objects.filter(pk=row.pk).update(spec={})
        with pytest.raises(ArtifactImmutable):
            Artifact.objects.filter(pk=row.pk).delete()
        for sql in ("UPDATE deployments_artifact SET spec = '{}'::jsonb WHERE id = %s",
                    "DELETE FROM deployments_artifact WHERE id = %s"):
            with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [row.pk])
        assert Artifact.objects.get().spec == applied

    def test_workers_are_sent_the_stored_spec_not_a_hand_edited_copy(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi")], user=owner)
        jd = JobDeployment.objects.get(deployment=deployment)
        applied = jd.spec
        jd.spec = {**jd.spec, "config": {"message": "edited in the admin"}}
        jd.save()

        sent = desired_artifacts(Worker.objects.get(hostname="ingest1@unit"))

        assert sent == [{"job_id": artifact_key(deployment.pk, "a"), "digest": jd.digest, "spec": applied}]

    def test_an_accepted_edit_is_stored_as_an_artifact(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi")], user=owner)
        jd = JobDeployment.objects.get(deployment=deployment)
        jd.spec = {**jd.spec, "config": {"message": "keep me"}}
        jd.save()

        drift_accept(deployment=deployment, drift=f"spec_edited:ingest:a:", user=owner)

        assert Artifact.objects.get(digest=spec_digest(jd.spec)).spec == jd.spec


class TestRunsFromTheArtifact:
    def test_the_pinned_graph_names_each_jobs_artifact_digest(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi"), job("b", group="load")], edges(("a", "b")), user=owner)

        execution = start(deployment, owner)

        digests = dict(JobDeployment.objects.filter(deployment=deployment).values_list("job_id", "digest"))
        assert {j["id"]: j["artifact"] for j in execution.graph["jobs"]} == digests

    def test_a_step_loads_a_missing_artifact_once_and_then_runs_it_with_no_query(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi")], user=owner)
        cache.clear()  # as a worker process that did not apply it
        sent = []
        artifact_loaded.connect(receiver := lambda sender, **kw: sent.append(kw), weak=False)
        try:
            with CaptureQueriesContext(connection) as cold:
                step(start(deployment, owner))
            with CaptureQueriesContext(connection) as warm:
                second = start(deployment, owner)
                step(second)
        finally:
            artifact_loaded.disconnect(receiver)

        assert len(store_reads(cold.captured_queries)) == 1 and store_reads(warm.captured_queries) == []
        assert attempt(second).output == {"message": "hi"}
        digest = JobDeployment.objects.get(deployment=deployment).digest
        assert [(s["key"], s["digest"], s["worker"]) for s in sent] == [
            (artifact_key(deployment.pk, "a"), digest, "ingest1@unit")]  # the miss only

    def test_a_run_pinned_before_a_reapply_runs_the_old_spec_and_a_new_run_the_new_one(self, groups, project, owner):
        deployment = make_deployment(project, [say("v1")], user=owner)
        before = start(deployment, owner)
        make_deployment(project, [say("v2")], user=owner, workflow=deployment.workflow)
        after = start(deployment, owner)
        cache.clear()  # as a worker that never held the old digest

        step(before)
        step(after)

        assert attempt(before).output == {"message": "v1"} and attempt(after).output == {"message": "v2"}

    def test_a_tampered_artifact_fails_the_step_for_good_naming_job_and_digests(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi")], user=owner)
        execution = start(deployment, owner)
        cache.clear()
        digest = execution.graph["jobs"][0]["artifact"]
        tampered = {**Artifact.objects.get(digest=digest).spec, "config": {"message": "injected"}}
        tamper(digest, tampered)

        step(execution)

        run = attempt(execution)
        assert run.status == StepStatus.FAILED and run.attempt == 1
        assert run.error["code"] == "artifact_mismatch" and run.error["retryable"] is False
        assert run.error["details"] == {"job_id": "a", "expected": digest, "actual": spec_digest(tampered)}
        assert "injected" not in json.dumps(run.input or {}) and run.output is None

    def test_a_missing_artifact_fails_the_step_for_good(self, groups, project, owner):
        deployment = make_deployment(project, [say("hi")], user=owner)
        execution = start(deployment, owner)
        cache.clear()
        digest = execution.graph["jobs"][0]["artifact"]
        tamper(digest, None)

        step(execution)

        run = attempt(execution)
        assert run.status == StepStatus.FAILED
        assert (run.error["code"], run.error["details"]) == ("artifact_not_found", {"job_id": "a", "expected": digest})

    def test_a_held_artifact_is_trusted_without_reading_the_store(self, groups, project, owner):
        # the cache only ever holds specs that hashed to their digest on the way in
        deployment = make_deployment(project, [say("hi")], user=owner)
        execution = start(deployment, owner)
        digest = execution.graph["jobs"][0]["artifact"]
        cache.clear()
        cache.load(desired_artifacts(Worker.objects.get(hostname="ingest1@unit")))
        tamper(digest, {"type": "log", "config": {"message": "injected"}})

        step(execution)

        assert attempt(execution).output == {"message": "hi"}


def test_the_admin_shows_stored_artifacts_read_only(admin_client, groups, project, owner):
    make_deployment(project, [say("hi")], user=owner)
    row = Artifact.objects.get()

    assert admin_client.get("/admin/deployments/artifact/").status_code == 200
    page = admin_client.get(f"/admin/deployments/artifact/{row.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(f"/admin/deployments/artifact/{row.pk}/delete/", {"post": "yes"}).status_code == 403


class TestCompensationsRunFromTheArtifact:
    """A compensation runs the `compensate` spec of the artifact its run pinned, like a step."""

    @staticmethod
    def failed_run(project, owner, undo: str = "undo v1"):
        """a (log, compensated by a log of `undo`) -> boom (fails for good): compensating, a to undo."""
        deployment = make_deployment(project, [
            job("a", "log", config={"message": "did"}, compensate={"type": "log", "config": {"message": undo}}),
            job("boom", "fail", config={"retryable": False}),
        ], edges(("a", "boom")), user=owner)
        execution = start(deployment, owner)
        step(execution)
        step(execution, "boom")
        assert saga_start(execution_id=execution.pk, delivery=DELIVERY).action == "done"
        return execution

    @staticmethod
    def compensate(execution) -> StepRun:
        original = attempt(execution)
        compensation_execute(execution_id=execution.pk, step_run_id=original.pk, delivery=DELIVERY)
        return StepRun.objects.filter(execution=execution, node_id="a", is_compensation=True).latest("attempt")

    def test_a_compensation_runs_the_pinned_artifact_not_the_graph_s_copy(self, groups, project, owner):
        execution = self.failed_run(project, owner)
        # The run's graph copy says something else (as a hand edit of the row would): the
        # artifact, checked against its digest, is what runs.
        graph = execution.graph
        graph["jobs"][0]["compensate"]["config"]["message"] = "edited in the graph"
        Execution.objects.filter(pk=execution.pk).update(graph=graph)
        _PINNED_CACHE.clear()
        cache.clear()

        run = self.compensate(execution)

        assert run.status == StepStatus.SUCCEEDED and run.output == {"message": "undo v1"}

    def test_a_run_pinned_before_a_reapply_compensates_with_the_old_spec(self, groups, project, owner):
        execution = self.failed_run(project, owner, undo="undo v1")
        make_deployment(project, [
            job("a", "log", config={"message": "did"}, compensate={"type": "log", "config": {"message": "undo v2"}}),
            job("boom", "fail", config={"retryable": False}),
        ], edges(("a", "boom")), user=owner, workflow=execution.deployment.workflow)
        cache.clear()

        assert self.compensate(execution).output == {"message": "undo v1"}

    @pytest.mark.parametrize("how", ["altered", "missing"])
    def test_a_tampered_or_missing_artifact_fails_the_compensation_for_good(self, groups, project, owner, how):
        execution = self.failed_run(project, owner)
        digest = execution.graph["jobs"][0]["artifact"]
        cache.clear()
        altered = {**Artifact.objects.get(digest=digest).spec,
                   "compensate": {"type": "log", "config": {"message": "injected"}}}
        tamper(digest, altered if how == "altered" else None)

        run = self.compensate(execution)

        assert run.status == StepStatus.FAILED and run.error["retryable"] is False
        assert run.error["code"] == {"altered": "artifact_mismatch", "missing": "artifact_not_found"}[how]
        assert "injected" not in json.dumps([run.input, run.output])
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.COMPENSATION_FAILED
