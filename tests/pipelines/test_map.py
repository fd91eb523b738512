"""The `map` step type: publish-time checks, items at run time, lanes, the plan, join order."""
from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.canvas import Chain, Chord, MergeTask, StepTask, iter_tasks, plan_from_dict
from pipelines.engine import decide_finish
from pipelines.engine.fanout import (
    INVALID_MAP_ITEMS,
    expand_items,
    item_context,
    item_job,
    lanes,
    map_plan,
)
from pipelines.engine.history import node_output, node_state, pending_nodes, shard_total, template_context
from pipelines.errors import StepFailed, TemplateError
from pipelines.steps import get_step_type
from pipelines.validation import validate_graph
from tests.pipelines.engine.graphs import NOW, attempt, graph, job, snapshot

MAP_CONFIG = {"items": "{{ .steps.discover.output.ids }}",
              "step": {"type": "log", "config": {"message": "item {{ .item }} at {{ .item_index }}"}}}


def doc(config, **node):
    return {"nodes": [{"id": "discover", "type": "noop"}, {"id": "each", "type": "map", "config": config, **node}],
            "edges": [{"from": "discover", "to": "each"}]}


def found(config, **node):
    return sorted((i.path, i.code) for i in validate_graph(doc(config, **node)).issues)


# --------------------------------------------------------------------------- publish-time checks


def test_a_map_over_a_template_with_a_templated_child_publishes():
    assert found(MAP_CONFIG) == []
    assert found({**MAP_CONFIG, "items": [1, 2, 3], "max_parallel": 3, "max_items": 10}) == []


@pytest.mark.parametrize("config, issues", [
    pytest.param({**MAP_CONFIG, "items": "{{ .steps[ }}"}, [("nodes[1].config.items", "invalid_jq")],
                 id="bad-items-template"),
    pytest.param({**MAP_CONFIG, "items": 5}, [("nodes[1].config.items", "invalid_config")], id="items-not-a-list"),
    pytest.param({"step": MAP_CONFIG["step"]}, [("nodes[1].config.items", "missing_config")], id="no-items"),
    pytest.param({**MAP_CONFIG, "max_parallel": 0}, [("nodes[1].config.max_parallel", "invalid_config")],
                 id="max-parallel-0"),
    pytest.param({**MAP_CONFIG, "max_parallel": 101}, [("nodes[1].config.max_parallel", "invalid_config")],
                 id="max-parallel-over-ceiling"),
    pytest.param({**MAP_CONFIG, "max_items": 0}, [("nodes[1].config.max_items", "invalid_config")],
                 id="max-items-0"),
    pytest.param({"items": [1]}, [("nodes[1].config.step", "missing_config")], id="no-child-step"),
    pytest.param({**MAP_CONFIG, "step": {"type": "nope"}}, [("nodes[1].config.step.type", "unknown_step_type")],
                 id="child-unknown-type"),
    pytest.param({**MAP_CONFIG, "step": {"type": "map", "config": MAP_CONFIG}},
                 [("nodes[1].config.step.type", "invalid_config")], id="nested-map-refused"),
    pytest.param({**MAP_CONFIG, "step": {"type": "approval"}}, [("nodes[1].config.step.type", "invalid_config")],
                 id="gate-child-refused"),
    pytest.param({**MAP_CONFIG, "step": {"type": "http", "config": {"method": "POST"}}},
                 [("nodes[1].config.step.config.url", "missing_config")], id="child-config-checked"),
    pytest.param({**MAP_CONFIG, "step": {"type": "log", "config": {"message": "{{ .item[ }}"}}},
                 [("nodes[1].config.step.config.message", "invalid_jq")], id="child-template-checked"),
    pytest.param({**MAP_CONFIG, "step": {"type": "log", "config": {"message": "m"}, "extra": 1}},
                 [("nodes[1].config.step.extra", "invalid_config")], id="child-unknown-key"),
])
def test_publishing_refuses_a_bad_map_config_with_its_path(config, issues):
    assert [(path, code) for path, code in found(config) if (path, code) in issues] == issues, found(config)


def test_a_map_cannot_also_have_replicas():
    assert ("nodes[1].replicas", "invalid_field") in found(MAP_CONFIG, replicas=3)


def test_a_map_step_never_runs_as_one_step():
    from pipelines.steps import StepContext

    with pytest.raises(StepFailed, match="expanded by the engine"):
        get_step_type("map").run(MAP_CONFIG, StepContext(execution_id="e", node_id="each"))


# --------------------------------------------------------------------------- items at run time


CONTEXT = {"steps": {"discover": {"output": {"ids": ["a", "b", "c"], "n": 2}}}, "params": {}}


def test_items_render_from_the_recorded_context():
    expansion = expand_items(MAP_CONFIG, CONTEXT)
    assert expansion.items == ["a", "b", "c"] and expansion.count == 3 and expansion.max_parallel == 10


@pytest.mark.parametrize("items, reason", [
    pytest.param("{{ .steps.discover.output.n }}", "not_a_list", id="a-number"),
    pytest.param("{{ .steps.missing.output }}", "not_a_list", id="null"),
    pytest.param("{{ .steps.discover.output }}", "not_a_list", id="an-object"),
    pytest.param("ids: {{ .steps.discover.output.ids }}", "not_a_list", id="interpolated-text"),
])
def test_items_that_are_not_a_list_fail_the_step_for_good(items, reason):
    with pytest.raises(StepFailed) as info:
        expand_items({**MAP_CONFIG, "items": items}, CONTEXT)
    assert info.value.code == INVALID_MAP_ITEMS and not info.value.retryable
    assert info.value.details["reason"] == reason and info.value.details["path"] == "config.items"


def test_a_list_over_the_maximum_fails_naming_count_and_limit():
    with pytest.raises(StepFailed) as info:
        expand_items({**MAP_CONFIG, "items": list(range(1001))}, CONTEXT)
    assert info.value.details == {"reason": "too_many", "path": "config.items", "count": 1001, "max_items": 1000}
    with pytest.raises(StepFailed) as info:
        expand_items({**MAP_CONFIG, "max_items": 2}, CONTEXT)
    assert info.value.details["max_items"] == 2
    assert expand_items({**MAP_CONFIG, "max_items": 3}, CONTEXT).count == 3


def test_a_config_can_ask_for_less_than_the_control_planes_ceilings_never_more():
    with pytest.raises(StepFailed, match="over the map's maximum of 2"):
        expand_items({**MAP_CONFIG, "max_items": 50}, CONTEXT, max_items=2)
    assert expand_items({**MAP_CONFIG, "max_parallel": 50}, CONTEXT, max_parallel=4).max_parallel == 4
    assert expand_items(MAP_CONFIG, CONTEXT, max_parallel=4).max_parallel == 4


def test_templated_limits_are_checked_once_rendered():
    assert expand_items({**MAP_CONFIG, "max_parallel": "{{ .steps.discover.output.n }}"}, CONTEXT).max_parallel == 2
    with pytest.raises(StepFailed) as info:
        expand_items({**MAP_CONFIG, "max_parallel": "{{ 0 }}"}, CONTEXT)
    assert info.value.details["reason"] == "invalid_limit"


def test_the_child_step_is_not_rendered_when_the_gate_opens():
    # `.item` does not exist yet: only items and the limits are rendered at the gate.
    expansion = expand_items({**MAP_CONFIG, "step": {"type": "log", "config": {"message": "{{ .item.x.y }}"}}},
                             CONTEXT)
    assert expansion.count == 3


def test_a_failing_items_template_raises_its_template_error():
    with pytest.raises(TemplateError):
        expand_items({**MAP_CONFIG, "items": "{{ error(\"boom\") }}"}, CONTEXT)


def test_items_see_only_the_runs_own_context_and_no_environment():
    expansion = expand_items({**MAP_CONFIG, "items": "{{ [env, $ENV, (.. | strings)] }}"}, CONTEXT)
    assert expansion.items == [{}, {}, "a", "b", "c"]


def test_huge_and_nested_items_are_kept_as_they_are():
    nested = {"a": [{"b": [{"c": list(range(50))}]}]}
    expansion = expand_items({**MAP_CONFIG, "items": [nested] * 1000}, CONTEXT)
    assert expansion.count == 1000 and expansion.items[999] == nested


# --------------------------------------------------------------------------- lanes and the plan


def test_item_i_runs_in_lane_i_modulo_max_parallel_in_order():
    assert lanes(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert lanes(3, 10) == [[0], [1], [2]]
    assert lanes(1, 5) == [[0]]
    assert lanes(0, 5) == []
    with pytest.raises(ValueError):
        lanes(3, 0)


@pytest.mark.parametrize("count, parallel", [(1, 1), (2, 5), (5, 5), (7, 3), (200, 5), (1000, 100)])
def test_lanes_cover_every_item_once_and_never_exceed_max_parallel(count, parallel):
    split = lanes(count, parallel)
    assert sorted(i for lane in split for i in lane) == list(range(count))
    assert len(split) <= parallel
    assert all(lane == sorted(lane) for lane in split)


def test_the_plan_of_an_empty_map_is_its_join_alone():
    assert map_plan("each", 0, 5, "ingest") == MergeTask("each", 0, "ingest")


def test_the_plan_of_one_lane_is_a_chain_ending_in_the_join():
    assert map_plan("each", 1, 5, "g") == Chain((StepTask("each", 0, 1, "g"), MergeTask("each", 1, "g")))
    assert map_plan("each", 3, 1, "g") == Chain((*(StepTask("each", i, 3, "g") for i in range(3)),
                                                  MergeTask("each", 3, "g")))


def test_the_plan_of_several_lanes_is_a_chord_of_chains_joined_by_the_merge():
    plan = map_plan("each", 200, 5, "g")
    assert isinstance(plan, Chord) and len(plan.header) == 5 and plan.body == MergeTask("each", 200, "g")
    for lane, chain in enumerate(plan.header):
        assert [task.shard for task in chain.items] == list(range(lane, 200, 5))
        assert all(task.shards == 200 for task in chain.items)
    assert sum(1 for _ in iter_tasks(plan)) == 201
    assert plan_from_dict(plan.to_dict()) == plan
    small = map_plan("each", 2, 5, "g")
    assert small == Chord((StepTask("each", 0, 2, "g"), StepTask("each", 1, 2, "g")), MergeTask("each", 2, "g"))


# --------------------------------------------------------------------------- what one item runs


def test_an_item_runs_the_child_step_with_the_nodes_policies():
    spec = job("each", "map", config=MAP_CONFIG, retry={"max_attempts": 3}, timeout_s=5,
               compensate={"type": "log", "config": {"message": "undo"}})
    child = item_job(spec)
    assert child["type"] == "log" and child["config"] == MAP_CONFIG["step"]["config"]
    assert (child["retry"], child["timeout_s"], child["compensate"]) == (spec["retry"], 5, spec["compensate"])
    assert item_context({"steps": {}}, {"k": 1}, 4) == {"steps": {}, "item": {"k": 1}, "item_index": 4}
    with pytest.raises(StepFailed, match="no child step"):
        item_job(job("each", "map", config={"items": []}))


# --------------------------------------------------------------------------- shard count and join order


GRAPH = graph([job("discover"), job("each", "map", config=MAP_CONFIG), job("after")],
              [("discover", "each"), ("each", "after")])
EACH = GRAPH.job("each")


def item(index: int, count: int, status: str = "succeeded", **fields):
    return replace(attempt("each", status, shard=index, output=f"out-{index}", **fields), shard_count=count)


def test_a_map_is_pending_until_its_first_shard_is_recorded():
    records = snapshot(attempt("discover", "succeeded"))
    assert shard_total(EACH, records.attempts) is None
    assert node_state(EACH, records.attempts) == "pending"
    assert pending_nodes(GRAPH, records.attempts) == ["each", "after"]


def test_a_map_is_done_when_every_recorded_item_succeeded_and_its_output_is_in_item_order():
    records = [attempt("discover", "succeeded")] + [item(i, 4) for i in (3, 1, 0)]
    partial = snapshot(*records)
    assert shard_total(EACH, partial.attempts) == 4
    assert node_state(EACH, partial.attempts) == "pending"
    done = snapshot(*records, item(2, 4, "failed"), item(2, 4, attempt=2))
    assert node_state(EACH, done.attempts) == "succeeded"
    assert node_output(EACH, done.attempts) == ["out-0", "out-1", "out-2", "out-3"]
    context = template_context(GRAPH, done.attempts, execution_id="e", trigger_input={}, trigger="manual",
                               started_at=NOW)
    assert context["steps"]["each"] == {"output": ["out-0", "out-1", "out-2", "out-3"]}


def test_a_map_of_one_item_still_outputs_a_list():
    records = snapshot(item(0, 1))
    assert node_output(EACH, records.attempts) == ["out-0"]


def test_an_empty_maps_join_record_completes_it_with_an_empty_list():
    join = replace(attempt("each", "succeeded", output=[]), shard_count=0)
    records = snapshot(attempt("discover", "succeeded"), join)
    assert node_state(EACH, records.attempts) == "succeeded"
    assert node_output(EACH, records.attempts) == []
    assert pending_nodes(GRAPH, records.attempts) == ["after"]


def test_the_run_finishes_only_once_every_item_is_recorded():
    running = snapshot(attempt("discover", "succeeded"), item(0, 2), attempt("after", "succeeded"))
    assert decide_finish(GRAPH, running, _facts()).kind == "wait"
    done = snapshot(attempt("discover", "succeeded"), item(0, 2), item(1, 2), attempt("after", "succeeded"))
    assert decide_finish(GRAPH, done, _facts()).kind == "finish"


def _facts():
    from pipelines.engine import DeliveryFacts

    return DeliveryFacts()


# --------------------------------------------------------------------------- drawing


def test_the_graph_drawing_marks_a_map_node_with_its_child_step():
    from pipelines.graph_layout import layout_graph

    layout = layout_graph(doc(MAP_CONFIG))
    each, discover = layout.node("each"), layout.node("discover")
    assert each.map_step == "log" and len(each.stack) == 2
    assert discover.map_step is None and discover.stack == ()
    assert layout_graph(doc({"items": []})).node("each").map_step == "?"


@pytest.mark.parametrize("step, reads", [
    pytest.param({"type": "log", "config": {"message": "{{ .item }} {{ .item.a[0] }} #{{ .item_index }}"}}, False,
                 id="item-paths"),
    pytest.param({"type": "log", "config": {"message": "{{ .params.x }} {{ .trigger.y }} {{ .execution.id }}"}},
                 False, id="what-every-claim-has"),
    pytest.param({"type": "log", "config": {"message": "{{ .steps.discover.output }}"}}, True, id="upstream"),
    pytest.param({"type": "log", "config": {"message": "{{ .item | tostring }}"}}, True, id="not-a-plain-path"),
    pytest.param({"type": "log", "config": {"message": "{{ .items }}"}}, True, id="another-key"),
    pytest.param({"type": "jq", "config": {"program": "."}}, True, id="type-reads-the-context"),
    pytest.param({"type": "nope"}, True, id="unknown-type"),
])
def test_an_items_claim_loads_upstream_outputs_only_when_its_child_may_read_them(step, reads):
    from pipelines.engine.fanout import item_reads_upstream

    assert item_reads_upstream(job("each", "map", config={**MAP_CONFIG, "step": step})) is reads


# --------------------------------------------------------------------------- planning


def _plan(config, slots=8, types=frozenset({"noop", "map", "log", "http"})):
    from pipelines.planner import FleetSnapshot, GroupState, plan_deployment

    graph = {"nodes": [{"id": "discover", "type": "noop", "group": "ingest"},
                       {"id": "each", "type": "map", "group": "ingest", "config": config}],
             "edges": [{"from": "discover", "to": "each"}]}
    return plan_deployment(graph, blueprints={}, templates={}, placement={}, replicas={},
                           fleet=FleetSnapshot({"ingest": GroupState("ingest", 1, slots, types)}), deployed={},
                           secrets=frozenset(), landing_store="file:///var/landing")


def test_planning_weighs_a_map_by_its_max_parallel_items():
    (warning,) = _plan(MAP_CONFIG).warnings  # the default: 10 items at once, on 8 slots
    assert warning.code == "capacity" and "needs 10 slots" in warning.message and "each x10" in warning.message
    assert _plan({**MAP_CONFIG, "max_parallel": 8}).warnings == ()
    assert _plan({**MAP_CONFIG, "max_parallel": "{{ .params.n }}"}).warnings[0].code == "capacity"  # the default


def test_planning_checks_that_the_maps_group_runs_its_child_step_type():
    http = {**MAP_CONFIG, "step": {"type": "http", "config": {"url": "https://example.test"}}}
    plan = _plan(http, types=frozenset({"noop", "map", "log"}))
    assert [(i.path, i.code) for i in plan.errors] == [("nodes[1].config.step.type", "unsupported_step_type")]
    assert _plan(http, slots=10).errors == ()
