"""A run's graph and canvas are built once per artifact revision, and never go stale.

Given a deployed workflow whose compiled start is cached in this process, a start reads no
artifact; any write to the artifacts (apply, a hand edit, a queryset update in the same
transaction, a deleted row) is seen by the very next start; runs never share graph objects; the
cache bypasses none of the start's checks (tenant, role, paused deployment, live workers).
"""
from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.core.errors import Conflict, NotFound
from controlplane.deployments.models import JobDeployment
from controlplane.executions.models import Execution
from controlplane.executions.services import execution_start
from controlplane.executions.services.start_canvas import start_canvas_cache_clear
from controlplane.fleet.models import Worker
from tests.controlplane.executions.builders import edges, job, make_deployment

pytestmark = pytest.mark.django_db

NODES = [job("a"), job("b", "log", config={"message": "first"}, group="load"), job("c")]
EDGES = edges(("a", "b"), ("b", "c"))


@pytest.fixture(autouse=True)
def _cold_cache():
    start_canvas_cache_clear()
    yield
    start_canvas_cache_clear()


@pytest.fixture
def deployment(groups, project, owner):
    return make_deployment(project, NODES, EDGES, user=owner)


def run(deployment, user, **kwargs) -> Execution:
    execution, _ = execution_start(deployment=deployment.pk, input=kwargs.pop("input", {}), user=user, **kwargs)
    return execution


def artifact_reads(queries) -> list[str]:
    """Statements that read artifact rows themselves (not the stamp aggregate of the start query)."""
    return [q["sql"] for q in queries if q["sql"].startswith('SELECT "deployments_jobdeployment"')]


def message_of(execution: Execution) -> str:
    return next(j for j in execution.graph["jobs"] if j["id"] == "b")["config"]["message"]


def test_a_second_start_reads_no_artifact_and_pins_the_same_graph_and_canvas(deployment, owner):
    with CaptureQueriesContext(connection) as cold:
        first = run(deployment, owner)
    with CaptureQueriesContext(connection) as warm:
        second = run(deployment, owner)

    assert len(artifact_reads(cold.captured_queries)) == 1
    assert artifact_reads(warm.captured_queries) == []
    assert len(warm.captured_queries) == len(cold.captured_queries) - 1
    stored = Execution.objects.get(pk=second.pk)
    assert stored.graph == Execution.objects.get(pk=first.pk).graph == first.graph
    assert stored.canvas == first.canvas and stored.canvas["timeouts"] == {}
    assert [j["id"] for j in stored.graph["jobs"]] == ["a", "b", "c"]
    assert second.events.get(seq=1).data["tasks"] == first.events.get(seq=1).data["tasks"] == 3


def test_runs_never_share_graph_objects(deployment, owner):
    first = run(deployment, owner)
    first.graph["jobs"][1]["config"]["message"] = "mutated in memory"
    first.canvas.clear()

    second = run(deployment, owner)

    assert message_of(second) == "first" and second.canvas


@pytest.mark.parametrize("how", ["save", "queryset_update", "raw_sql"])
def test_an_artifact_written_in_the_same_transaction_is_seen_by_the_next_start(deployment, owner, how):
    run(deployment, owner)  # warm
    jd = JobDeployment.objects.get(deployment=deployment, job_id="b")
    spec = {**jd.spec, "config": {"message": "edited by hand"}}
    if how == "save":
        jd.spec = spec
        jd.save()
    elif how == "queryset_update":  # no auto_now: updated_at stays as it was
        JobDeployment.objects.filter(pk=jd.pk).update(spec=spec)
    else:
        import json

        with connection.cursor() as cursor:
            cursor.execute("UPDATE deployments_jobdeployment SET spec = %s::jsonb WHERE id = %s",
                           [json.dumps(spec), jd.pk])

    assert message_of(run(deployment, owner)) == "edited by hand"


def test_a_deleted_artifact_is_seen_by_the_next_start(deployment, owner):
    run(deployment, owner)
    JobDeployment.objects.filter(deployment=deployment).delete()

    with pytest.raises(Conflict) as error:
        run(deployment, owner)
    assert error.value.code == "not_deployed"


def test_a_new_version_applied_is_what_the_next_start_runs(deployment, project, owner):
    run(deployment, owner)
    changed = [job("a"), job("b", "log", config={"message": "second"}, group="load"), job("c"), job("d")]
    redeployed = make_deployment(project, changed, EDGES + edges(("c", "d")), user=owner, workflow=deployment.workflow)

    execution = run(redeployed, owner)

    assert message_of(execution) == "second" and [j["id"] for j in execution.graph["jobs"]] == ["a", "b", "c", "d"]
    assert execution.version_id == redeployed.version_id != deployment.version_id


def test_a_warm_cache_still_refuses_another_tenant_a_paused_deployment_and_a_dead_group(deployment, owner, outsider):
    from controlplane.deployments.services import deployment_pause, deployment_resume

    run(deployment, owner)

    with pytest.raises(NotFound):
        run(deployment, outsider)
    deployment_pause(deployment=deployment, user=owner)
    with pytest.raises(Conflict) as paused:
        run(deployment, owner)
    assert paused.value.code == "deployment_paused"
    deployment_resume(deployment=deployment, user=owner)
    run(deployment, owner)
    Worker.objects.filter(hostname="load1@unit").update(status="offline")
    with pytest.raises(Conflict) as dead:
        run(deployment, owner)
    assert (dead.value.code, dead.value.path) == ("no_live_worker", "jobs.b.group")


def test_the_company_slug_is_part_of_the_queues(deployment, owner, company):
    run(deployment, owner)
    company.slug = "acme2"
    company.save()

    execution = run(deployment, owner)

    from controlplane.executions.services import execution_queues

    assert execution_queues(execution) == {"ingest": "wg.acme2.ingest", "load": "wg.acme2.load"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_on_a_cold_cache_all_pin_the_same_graph(groups, project, owner):
    deployment = make_deployment(project, NODES, EDGES, user=owner)
    errors, ids = [], []

    def start():
        try:
            ids.append(run(deployment, owner).pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors and len(ids) == 8
    graphs = list(Execution.objects.filter(pk__in=ids).values_list("graph", flat=True))
    assert all(graph == graphs[0] for graph in graphs) and message_of(Execution.objects.get(pk=ids[0])) == "first"


def test_the_api_answers_a_start_without_reading_the_version_again(deployment, owner, client_for):
    client = client_for(owner)
    run(deployment, owner)

    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/executions", {"deployment": deployment.pk, "input": {"n": 1}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["workflow"], body["version_number"]) == (deployment.workflow_id, deployment.version.number)
    assert [j["id"] for j in body["graph"]["jobs"]] == ["a", "b", "c"] and body["input"] == {"n": 1}
    assert not [q["sql"] for q in queries.captured_queries if 'FROM "workflows_workflowversion"' in q["sql"]]
    assert artifact_reads(queries.captured_queries) == []


def test_dispatch_keeps_no_broker_connection_per_start_and_publishes_each_run(
        deployment, owner, django_capture_on_commit_callbacks):
    """Publishing after commit goes through Celery's producer pool: after 30 starts this process
    holds no more Redis connections than after one, and each run's first task is on its queue."""
    import json

    import redis
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker (bin/test)")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    db = broker.connection_pool.connection_kwargs.get("db", 0)
    assert db != 0, "tests must not use Redis database 0"
    queue = "wg.acme.ingest"
    broker.delete(queue)

    def clients() -> int:
        return sum(1 for c in broker.client_list() if int(c.get("db", -1)) == db)

    with django_capture_on_commit_callbacks(execute=True):
        run(deployment, owner)  # the first publish may open the pool's connection
    before = clients()
    ids = []
    for _ in range(30):
        with django_capture_on_commit_callbacks(execute=True):
            ids.append(str(run(deployment, owner).pk))

    assert clients() <= before + 1
    messages = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
    first_tasks = [m["headers"] for m in messages if m["headers"]["task"] == "flowplane.step"]
    assert {h["argsrepr"].split(",")[0].strip("('\" ") for h in first_tasks} >= set(ids)
    assert all(Execution.objects.get(pk=i).status == "running" for i in ids)  # no dispatch failure
    broker.delete(queue)


def test_the_cache_is_bounded_in_entries_and_characters(groups, project, owner, monkeypatch):
    from controlplane.executions.services import start_canvas as cache

    deployments = [make_deployment(project, NODES, EDGES, user=owner) for _ in range(3)]
    monkeypatch.setattr(cache, "CACHE_SIZE", 2)
    for deployment in deployments:
        run(deployment, owner)
    assert len(cache._CACHE) == 2 and {key[0] for key in cache._CACHE} == {d.pk for d in deployments[1:]}

    monkeypatch.setattr(cache, "CACHE_CHARS", 1)  # every entry is larger: only the newest stays
    run(deployments[0], owner)
    assert [key[0] for key in cache._CACHE] == [deployments[0].pk]
    assert cache._CACHED_CHARS == next(iter(cache._CACHE.values())).size
    assert message_of(run(deployments[1], owner)) == "first"  # evicted: rebuilt, same graph
