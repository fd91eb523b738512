"""The execution diff (per step, input, version; tenancy) and the live event stream (SSE in seq
order, resumed from Last-Event-ID, closed when the run ends, bounded per connection)."""
from __future__ import annotations

import pytest

from controlplane.executions.models import ExecutionEvent
from controlplane.executions.services import Delivery, execution_start, step_execute
from tests.controlplane.executions.builders import deploy_version, edges, job, make_deployment, make_version

pytestmark = pytest.mark.django_db

DELIVERY = Delivery(task_id="t-1", worker="ingest1@unit", queue="wg.acme.ingest")
URL = "/api/v1/executions"
SSE = {"HTTP_ACCEPT": "text/event-stream"}


def graph():
    return [job("a", "jq", config={"program": "{items: .trigger.items}"}),
            job("b", "jq", config={"program": 'if .trigger.fail then error("no") else {ok: true} end'}),
            job("c", "jq", config={"program": "{done: true}"})], edges(("a", "b"), ("b", "c"))


@pytest.fixture
def deployment(groups, project, owner):
    return make_deployment(project, *graph(), user=owner)


def run(deployment, owner, input, nodes=("a", "b", "c")):
    execution, _ = execution_start(deployment=deployment, input=input, user=owner)
    for node in nodes:
        outcome = step_execute(execution_id=execution.pk, node_id=node, shard=0, shard_count=1, delivery=DELIVERY,
                               final=node == nodes[-1])
        if outcome.action == "fail":
            break
    execution.refresh_from_db()
    return execution


def by_node(body):
    return {step["node_id"]: step for step in body["steps"]}


def test_the_diff_names_differing_output_paths_statuses_and_inputs(deployment, owner, client_for):
    left = run(deployment, owner, {"items": [{"id": 1}, {"id": 2}, {"id": 3}]})
    right = run(deployment, owner, {"items": [{"id": 1}, {"id": 2}, {"id": 9}]})
    failed = run(deployment, owner, {"items": [], "fail": True})

    body = client_for(owner).get(f"{URL}/diff?left={left.pk}&right={right.pk}").json()
    steps = by_node(body)
    assert (steps["a"]["result"], steps["a"]["paths"]) == ("output_differs", ["$.items[2].id"])
    assert steps["b"]["result"] == steps["c"]["result"] == "identical"
    assert body["input"] == {"identical": False, "paths": ["$.items[2].id"], "truncated": False}
    assert body["version"]["identical"] and not body["identical"]

    against_failed = by_node(client_for(owner).get(f"{URL}/diff?left={left.pk}&right={failed.pk}").json())
    assert (against_failed["b"]["result"], against_failed["b"]["left_status"],
            against_failed["b"]["right_status"]) == ("status_differs", "succeeded", "failed")
    assert against_failed["c"]["result"] == "only_left"
    same = client_for(owner).get(f"{URL}/diff?left={left.pk}&right={left.pk}").json()
    assert same["identical"] and same["summary"]["identical"] == 3


def test_the_diff_shows_version_differences_and_steps_only_on_one_side(deployment, project, owner, client_for):
    old = run(deployment, owner, {"items": []})
    nodes, edge_list = graph()
    deploy_version(make_version(project, [*nodes, job("d", "noop")], [*edge_list, *edges(("c", "d"))], user=owner,
                                workflow=deployment.workflow), user=owner)
    new = run(deployment, owner, {"items": []}, nodes=("a", "b", "c", "d"))

    body = client_for(owner).get(f"{URL}/diff?left={old.pk}&right={new.pk}").json()

    assert (body["version"]["identical"], body["version"]["left"]["number"], body["version"]["right"]["number"]) == (
        False, 1, 2)
    assert by_node(body)["d"]["result"] == "only_right" and body["input"]["identical"]


def test_the_diff_needs_both_runs_visible(deployment, owner, outsider, client_for):
    mine = run(deployment, owner, {"items": []})

    assert client_for(outsider).get(f"{URL}/diff?left={mine.pk}&right={mine.pk}").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert client_for(owner).get(f"{URL}/diff?left={mine.pk}&right={missing}").status_code == 404
    assert client_for(owner).get(f"{URL}/diff?left={mine.pk}").status_code == 400


def messages(response) -> list[dict]:
    """The SSE messages of a streamed response: [{id, event, data}] (comments and retry left out)."""
    text = b"".join(response.streaming_content).decode()
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
                      and ": " in line)
        if "event" in fields:
            out.append(fields)
    return out


def test_events_stream_in_seq_order_and_the_stream_closes_when_the_run_ended(deployment, owner, client_for):
    execution = run(deployment, owner, {"items": [1]})
    seqs = list(ExecutionEvent.objects.filter(execution=execution).order_by("seq").values_list("seq", "type"))

    response = client_for(owner).get(f"{URL}/{execution.pk}/events", **SSE)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    got = messages(response)
    assert [(int(m["id"]), m["event"]) for m in got[:-1]] == seqs
    assert got[-1]["event"] == "end" and '"succeeded"' in got[-1]["data"]


def test_a_stream_resumes_after_last_event_id_and_a_reconnect_after_the_end_is_204(deployment, owner, client_for):
    execution = run(deployment, owner, {"items": [1]})
    last = execution.event_seq
    api = client_for(owner)

    resumed = messages(api.get(f"{URL}/{execution.pk}/events", HTTP_LAST_EVENT_ID="3", **SSE))

    assert [int(m["id"]) for m in resumed[:-1]] == list(range(4, last + 1))
    assert api.get(f"{URL}/{execution.pk}/events", HTTP_LAST_EVENT_ID=str(last), **SSE).status_code == 204
    assert api.get(f"{URL}/{execution.pk}/events", HTTP_LAST_EVENT_ID="x", **SSE).status_code == 400
    assert api.get(f"{URL}/{execution.pk}/events?after=2").json()["results"][0]["seq"] == 3  # the JSON page


def test_a_stream_of_a_running_run_is_bounded_and_slots_per_process_are_limited(
    deployment, owner, outsider, client_for, settings
):
    settings.EVENTS_STREAM_MAX_S, settings.EVENTS_STREAM_POLL_S = 0.3, 0.05
    execution, _ = execution_start(deployment=deployment, input={"items": []}, user=owner)
    api = client_for(owner)

    response = api.get(f"{URL}/{execution.pk}/events", **SSE)
    text = b"".join(response.streaming_content).decode()

    assert text.startswith("retry: ") and "id: 1\nevent: execution.started" in text
    assert text.rstrip().endswith("reconnect with Last-Event-ID") and "event: end" not in text
    settings.EVENTS_STREAM_MAX_PER_PROCESS = 0
    busy = api.get(f"{URL}/{execution.pk}/events", **SSE)
    assert (busy.status_code, busy["Retry-After"]) == (503, "5")
    assert client_for(outsider).get(f"{URL}/{execution.pk}/events", **SSE).status_code == 404


def test_errors_of_a_stream_request_are_json(deployment, owner, client_for):
    execution = run(deployment, owner, {"items": [1]})

    response = client_for(owner).get(f"{URL}/{execution.pk}/events", HTTP_LAST_EVENT_ID="x", **SSE)

    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    assert response.json()["path"] == "Last-Event-ID"
