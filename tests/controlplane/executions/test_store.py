"""The store is the only writer of attempts and run status, and every such write has its event.

The lock-free claim is correct only because every change to a run's attempts or status appends an
event (an unchanged event sequence then proves an unchanged run). `store_write` enforces it at the
API; these tests check that nothing else writes those fields, that the store refuses a change
without an event, and that a run's recorded attempts all have their events.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.db import transaction

from controlplane.executions.models import EventType, Execution, StepRun, StepStatus
from controlplane.executions.store import locked_execution, store_write
from tests.controlplane.executions.test_services import start, step

ROOT = Path(__file__).resolve().parents[3]
WRITERS_ALLOWED = {ROOT / "controlplane/executions/store.py"}
STATUS_FIELDS = {"status", "attempt", "completed_seq"}


def _writes_status(node: ast.Call) -> bool:
    """`x.save(update_fields=[... "status" ...])`, `qs.update(status=...)` or `.create(..., status=...)` on rows."""
    func = node.func
    if not isinstance(func, ast.Attribute):
        return False
    keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
    if func.attr == "save" and "update_fields" in keywords:
        value = keywords["update_fields"]
        names = {elt.value for elt in getattr(value, "elts", []) if isinstance(elt, ast.Constant)}
        return bool(names & STATUS_FIELDS)
    if func.attr in ("update", "bulk_update"):
        return bool(set(keywords) & STATUS_FIELDS)
    return False


def test_no_module_but_the_store_saves_an_attempts_or_a_runs_status():
    offenders = []
    for path in sorted((ROOT / "controlplane/executions").rglob("*.py")):
        if path in WRITERS_ALLOWED or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _writes_status(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "write executions and step runs and run status through controlplane.executions.store.store_write"


@pytest.mark.django_db
def test_the_store_refuses_a_change_without_its_event(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])
    step(execution, "a")
    run = StepRun.objects.get(execution=execution)

    with transaction.atomic():
        locked = locked_execution(execution.pk)
        run.status = StepStatus.LOST
        with pytest.raises(ValueError, match="appends its event"):
            store_write(execution=locked, update=[(run, ["status"])], events=[])
        locked.status = "failed"
        with pytest.raises(ValueError):
            store_write(execution=locked, events=[], execution_fields=["status"])
    run.refresh_from_db()
    assert run.status == StepStatus.SUCCEEDED


@pytest.mark.django_db
def test_every_recorded_attempt_of_a_run_has_its_event(groups, project, owner):
    # given a run with a success, a skip (dead branch), a retry and a final failure
    execution = start(project, owner, [
        {"id": "check", "type": "condition", "group": "ingest", "config": {"expression": "false"}},
        {"id": "yes", "type": "noop", "group": "ingest"},
        {"id": "no", "type": "fail", "group": "ingest", "config": {"retryable": True},
         "retry": {"max_attempts": 2, "initial_delay_s": 0, "jitter": False}},
    ], [{"from": "check", "to": "yes", "branch": "true"}, {"from": "check", "to": "no", "branch": "false"}])
    # when its steps run (the failing one twice)
    for node in ("check", "yes", "no", "no"):
        step(execution, node)

    # then each attempt's status change is an event naming it
    kinds = {StepStatus.SUCCEEDED: EventType.STEP_COMPLETED, StepStatus.SKIPPED: EventType.STEP_SKIPPED,
             StepStatus.FAILED: (EventType.STEP_RETRYING, EventType.STEP_FAILED)}
    events = list(execution.events.values_list("type", "data"))
    runs = list(StepRun.objects.filter(execution=execution).values_list("node_id", "attempt", "status"))
    assert {status for _, _, status in runs} == {StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED}
    for node_id, attempt, status in runs:
        wanted = kinds[status] if isinstance(kinds[status], tuple) else (kinds[status],)
        assert any(type in wanted and data.get("node_id") == node_id
                   and data.get("attempt", attempt) == attempt for type, data in events), (node_id, attempt, status)


@pytest.mark.django_db
def test_a_run_is_created_through_the_store_with_its_events_numbered_from_one(groups, project, owner):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])
    assert list(execution.events.values_list("seq", "type")) == [(1, "execution.started")]
    fresh = Execution(company=execution.company, deployment=execution.deployment, version=execution.version,
                      environment=execution.environment, trigger=execution.trigger, input={"n": 1},
                      graph=execution.graph, canvas=execution.canvas, status=execution.status,
                      started_at=execution.started_at)

    with transaction.atomic():
        appended = store_write(execution=fresh, create=True, events=[("execution.started", {"n": 1}),
                                                                      ("note", None)])

    assert [(e.seq, e.type, e.data) for e in appended] == [(1, "execution.started", {"n": 1}), (2, "note", {})]
    stored = Execution.objects.get(pk=fresh.pk)
    assert stored.event_seq == 2 and stored.input == {"n": 1}
    assert list(stored.events.order_by("seq").values_list("seq", "type")) == [(1, "execution.started"), (2, "note")]


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [{"events": []}, {"execution_fields": ["status"]}, {"expect_running": True},
                                   {"existing": True}], ids=["no event", "fields", "conditional", "not new"])
def test_creating_a_run_takes_its_events_and_nothing_else(groups, project, owner, extra):
    execution = start(project, owner, [{"id": "a", "type": "noop", "group": "ingest"}])
    target = execution if extra.pop("existing", False) else Execution(
        company=execution.company, deployment=execution.deployment, version=execution.version, graph={},
        canvas={}, status=execution.status)
    kwargs = {"events": [("execution.started", {})], **extra}
    with transaction.atomic(), pytest.raises(ValueError):
        store_write(execution=target, create=True, **kwargs)
