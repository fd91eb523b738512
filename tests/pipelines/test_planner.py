"""The planner: placement, landing adapters, planning failures, capacity, diff."""

import copy
import json

import pytest

from pipelines.planner import (
    DeployedJob,
    FleetSnapshot,
    GroupState,
    Plan,
    changed_fields,
    diff_jobs,
    plan_deployment,
)

ALL_TYPES = frozenset({"noop", "log", "http", "python", "landing_write", "landing_read"})


def fleet(**groups):
    """``fleet(ingest=(workers, slots), gpu=(1, 4, {"noop"}))``."""
    out = {}
    for slug, spec in groups.items():
        types = frozenset(spec[2]) if len(spec) > 2 else ALL_TYPES
        out[slug] = GroupState(slug, spec[0], spec[1], types)
    return FleetSnapshot(out)


FLEET = fleet(ingest=(2, 8), batch=(1, 4), gpu=(1, 4))

BLUEPRINT = {
    "params": {"url": {}},
    "inputs": [{"name": "in", "to": ["fetch"]}],
    "outputs": [{"name": "out", "from": "store"}],
    "nodes": [
        {"id": "fetch", "type": "http", "config": {"url": "{{ .params.url }}"}},
        {"id": "store", "type": "noop"},
    ],
    "edges": [{"from": "fetch", "to": "store"}],
}


def base_graph():
    return {
        "params": {"region": "us-east"},
        "nodes": [
            {"id": "refresh", "type": "http", "group": "ingest",
             "config": {"url": "https://example.test/token", "method": "POST",
                        "headers": {"Authorization": {"$secret": "api-token"}}}},
            {"id": "harvest", "blueprint": "fanout@1", "group": "ingest",
             "params": {"url": "https://example.test/items"}},
            {"id": "load", "type": "log", "group": "batch", "config": {"message": "done"}},
        ],
        "edges": [{"from": "refresh", "to": "harvest"},
                  {"from": "harvest", "to": "load", "delivery": "landing"}],
    }


def plan(graph=None, **kw):
    args = dict(
        blueprints={("fanout", 1): BLUEPRINT},
        templates={},
        placement={},
        replicas={},
        fleet=FLEET,
        deployed={},
        secrets=frozenset({"api-token"}),
        landing_store="file:///var/landing",
    )
    args.update(kw)
    return plan_deployment(base_graph() if graph is None else graph, **args)


def jobs(p: Plan):
    return {j.job_id: j for j in p.jobs}


def deployed_from(p: Plan):
    return {j.job_id: DeployedJob.from_job(j) for j in p.jobs}


def error_codes(p: Plan):
    return [(i.code, i.path) for i in p.errors]


def changes(p: Plan):
    return {c.job_id: c for c in p.changes if c.action != "noop"}


# --------------------------------------------------------------------------- jobs


def test_clean_plan_creates_every_job_with_digests():
    p = plan()
    assert p.errors == () and p.warnings == ()
    assert sorted(jobs(p)) == [
        "harvest/fetch", "harvest/store", "harvest/store->load/landing-read",
        "harvest/store->load/landing-write", "load", "refresh",
    ]
    assert all(j.digest.startswith("sha256:") for j in p.jobs)
    assert p.summary["create"] == 6
    assert p.format_version == 1


def test_plan_is_deterministic_and_inputs_are_not_mutated():
    g, bps = base_graph(), {("fanout", 1): copy.deepcopy(BLUEPRINT)}
    snapshot = copy.deepcopy((g, bps))
    first = plan(g, blueprints=bps)
    assert (g, bps) == snapshot
    assert plan(g, blueprints=bps) == first


def test_landing_edge_inserts_write_on_producer_group_and_read_on_consumer_group():
    p = plan()
    j = jobs(p)
    write, read = j["harvest/store->load/landing-write"], j["harvest/store->load/landing-read"]
    assert (write.kind, write.type, write.group) == ("landing_write", "landing_write", "ingest")
    assert (read.kind, read.type, read.group) == ("landing_read", "landing_read", "batch")
    assert write.spec["config"]["store"] == "file:///var/landing"
    assert write.spec["config"]["key"] == read.spec["config"]["key"] == "{{ .execution.id }}/harvest/store->load"
    assert set(p.edges) >= {("harvest/store", write.job_id), (write.job_id, read.job_id), (read.job_id, "load")}
    assert ("harvest/store", "load") not in p.edges
    assert j["load"].spec["upstream"] == [read.job_id]
    assert write.source == "edges[1]"


def test_secrets_stay_references_in_specs():
    p = plan()
    spec = jobs(p)["refresh"].spec
    assert spec["config"]["headers"]["Authorization"] == {"$secret": "api-token"}
    assert "api-token" in json.dumps(spec)  # the name, never a value: the planner has none


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "placement, expected_fetch, expected_store",
    [
        pytest.param({}, "ingest", "ingest", id="node-group"),
        pytest.param({"harvest": "gpu"}, "gpu", "gpu", id="alias-applies-to-all"),
        pytest.param({"harvest": "gpu", "harvest/store": "batch"}, "gpu", "batch", id="job-beats-alias"),
    ],
)
def test_placement_overrides_most_specific_wins(placement, expected_fetch, expected_store):
    j = jobs(plan(placement=placement))
    assert (j["harvest/fetch"].group, j["harvest/store"].group) == (expected_fetch, expected_store)
    assert j["harvest/store->load/landing-write"].group == expected_store


def test_replica_overrides_node_and_alias():
    j = jobs(plan(replicas={"harvest": 3, "harvest/fetch": 2, "load": 4}))
    assert (j["harvest/fetch"].replicas, j["harvest/store"].replicas, j["load"].replicas) == (2, 3, 4)
    assert j["load"].spec["replicas"] == 4


def test_override_naming_nothing_is_an_error():
    p = plan(placement={"nope": "gpu"}, replicas={"load": 0})
    assert ("unknown_target", "placement.nope") in error_codes(p)
    assert ("invalid_field", "replicas.load") in error_codes(p)


def test_default_group_and_missing_group():
    g = base_graph()
    del g["nodes"][2]["group"]
    assert jobs(plan(g, default_group="gpu"))["load"].group == "gpu"
    assert ("missing_group", "nodes[2].group") in error_codes(plan(g))


# --------------------------------------------------------------------------- planning failures


def test_unbound_blueprint_port_is_a_channel_without_producer():
    g = base_graph()
    g["edges"] = [g["edges"][1]]
    assert error_codes(plan(g)) == [("unbound_port", "nodes[1]")]


def test_landing_edge_with_missing_side():
    g = base_graph()
    g["edges"][1] = {"from": "harvest", "delivery": "landing"}
    assert ("unbound_channel", "edges[1].to") in error_codes(plan(g))


@pytest.mark.parametrize(
    "fleet_, placement, expected",
    [
        pytest.param(fleet(ingest=(2, 8), gpu=(1, 4)), {}, ("unknown_group", "nodes[2].group"), id="unknown"),
        pytest.param(fleet(ingest=(2, 8), batch=(0, 0)), {}, ("no_live_worker", "nodes[2].group"), id="no-live"),
        pytest.param(FLEET, {"harvest": "tpu"}, ("unknown_group", "placement.harvest"), id="via-placement"),
    ],
)
def test_group_failures(fleet_, placement, expected):
    p = plan(fleet=fleet_, placement=placement)
    assert expected in error_codes(p)
    assert len([e for e in p.errors if e.path == expected[1]]) == 1  # reported once per path


def test_missing_secret_points_at_the_reference():
    p = plan(secrets=frozenset())
    assert error_codes(p) == [("missing_secret", "nodes[0].config.headers.Authorization")]


def test_missing_param_and_missing_config():
    g = base_graph()
    del g["nodes"][1]["params"]
    g["nodes"][2]["config"] = {}
    codes = error_codes(plan(g))
    assert ("missing_param", "nodes[1].params.url") in codes
    assert ("missing_config", "nodes[2].config.message") in codes


def test_step_type_not_advertised_by_group():
    p = plan(fleet=fleet(ingest=(2, 8), batch=(1, 4, {"noop", "landing_read"})))
    assert error_codes(p) == [("unsupported_step_type", "nodes[2].type")]


def test_unknown_blueprint_reported_with_path():
    g = base_graph()
    g["nodes"][1]["blueprint"] = "fanout@7"
    assert ("unknown_blueprint", "nodes[1].blueprint") in error_codes(plan(g))


def test_structural_issues_are_included():
    g = base_graph()
    g["nodes"].append({"id": "refresh", "type": "noop", "group": "ingest"})
    assert ("duplicate_id", "nodes[3].id") in error_codes(plan(g))


def test_steps_in_sequence_do_not_add_up_to_a_capacity_warning():
    # refresh -> harvest/fetch (2) -> harvest/store (2) -> landing-write: 6 replicas, at most 2 at once
    p = plan(fleet=fleet(ingest=(1, 3), batch=(1, 4)), replicas={"harvest": 2})
    assert p.errors == () and p.warnings == ()


def parallel_graph(width):
    """``start -> b0..b{width-1} -> join``, all on ingest."""
    branches = [f"b{i}" for i in range(width)]
    return {
        "nodes": [{"id": n, "type": "noop", "group": "ingest"} for n in ["start", *branches, "join"]],
        "edges": [{"from": "start", "to": b} for b in branches] + [{"from": b, "to": "join"} for b in branches],
    }


def test_capacity_warning_counts_the_widest_set_of_concurrent_jobs():
    p = plan(parallel_graph(3), fleet=fleet(ingest=(1, 3)), replicas={"b0": 2})
    assert p.errors == ()
    (warning,) = p.warnings
    assert (warning.code, warning.path) == ("capacity", "fleet.ingest")
    assert "needs 4 slots at once" in warning.message and "3 live slots" in warning.message
    assert "for jobs that can run at the same time (b0 x2, b1, b2)" in warning.message
    assert plan(parallel_graph(3), fleet=fleet(ingest=(1, 3))).warnings == ()  # 3 branches, 3 slots


def test_capacity_warning_names_at_most_five_jobs():
    (warning,) = plan(parallel_graph(8), fleet=fleet(ingest=(1, 2))).warnings
    assert "needs 8 slots at once for jobs that can run at the same time (b0, b1, b2, b3, b4 and 3 more)" in warning.message


# --------------------------------------------------------------------------- diff


def test_no_changes_against_itself():
    first = plan()
    again = plan(deployed=deployed_from(first))
    assert not again.has_changes
    assert again.summary["noop"] == len(again.jobs)


def test_diff_add_remove_change_replace_move():
    old = plan()
    g = base_graph()
    g["nodes"][0]["config"]["url"] = "https://example.test/v2"  # change
    g["nodes"][0]["replicas"] = 2
    g["nodes"][2] = {"id": "load", "type": "noop", "group": "batch"}  # replace (type changes)
    g["nodes"].append({"id": "audit", "type": "noop", "group": "batch"})  # add
    g["edges"][1].pop("delivery")  # landing -> local: adapters removed
    new = plan(g, deployed=deployed_from(old), placement={"harvest/fetch": "gpu"})  # move
    c = changes(new)
    assert c["audit"].action == "create"
    assert c["harvest/store->load/landing-write"].action == "delete"
    assert c["harvest/store->load/landing-read"].action == "delete"
    assert c["refresh"].action == "update"
    assert set(c["refresh"].fields) == {"config.url", "replicas"}
    assert c["load"].action == "replace" and "type" in c["load"].fields
    move = c["harvest/fetch"]
    assert (move.action, move.moved_from, move.moved_to, move.disruptive) == ("update", "ingest", "gpu", True)
    assert "group" in move.fields
    assert new.summary == {"create": 1, "update": 2, "delete": 2, "replace": 1, "noop": 0, "move": 1}  # once each


def test_blueprint_config_edit_updates_without_changing_ids():
    old = plan()
    edited = copy.deepcopy(BLUEPRINT)
    edited["nodes"][0]["config"]["method"] = "POST"
    new = plan(blueprints={("fanout", 1): edited}, deployed=deployed_from(old))
    assert [j.job_id for j in new.jobs] == [j.job_id for j in old.jobs]
    assert {k: v.fields for k, v in changes(new).items()} == {"harvest/fetch": ("config.method",)}


def test_diff_jobs_alone_and_changed_fields():
    p = plan()
    assert all(c.action == "create" for c in diff_jobs(p.jobs, {}))
    gone = diff_jobs((), deployed_from(p))
    assert {c.action for c in gone} == {"delete"}
    assert changed_fields({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 1, "c": 3}, "l": [2], "n": 1}) == [
        "a.c", "l", "n"]


def test_blueprint_structure_is_checked_once_with_instance_path():
    bp = copy.deepcopy(BLUEPRINT)
    bp["nodes"][1]["replicas"] = 0
    g = base_graph()
    g["nodes"].append({"id": "second", "blueprint": "fanout@1", "group": "ingest", "params": {"url": "u"}})
    g["edges"].append({"from": "refresh", "to": "second"})
    codes = error_codes(plan(g, blueprints={("fanout", 1): bp}))
    assert codes.count(("invalid_field", "nodes[1](fanout@1).nodes[1].replicas")) == 1


def test_cycle_through_a_blueprint_is_found_after_expansion():
    g = base_graph()
    g["edges"].append({"from": "harvest", "to": "refresh"})
    assert [c for c, _ in error_codes(plan(g))] == ["cycle"]


def test_adapter_placement_override_and_unknown_adapter_key():
    p = plan(placement={"harvest/store->load/landing-read": "gpu", "a->b/landing-read": "gpu"})
    assert jobs(p)["harvest/store->load/landing-read"].group == "gpu"
    assert error_codes(p) == [("unknown_target", "placement.a->b/landing-read")]


# --------------------------------------------------------------------------- ports


def test_named_ports_plan_like_single_ports():
    g = base_graph()
    g["edges"] = [{"from": "refresh", "to": "harvest:in"},
                  {"from": "harvest:out", "to": "load", "delivery": "landing"}]
    named, single = plan(g), plan()
    assert named.errors == ()
    assert named.jobs == single.jobs and named.edges == single.edges


@pytest.mark.parametrize(
    "edge, expected",
    [
        pytest.param({"from": "refresh", "to": "harvest:nope"}, ("unknown_port", "edges[2].to"),
                     id="undeclared-port"),
        pytest.param({"from": "refresh:out", "to": "load"}, ("unknown_port", "edges[2].from"),
                     id="port-on-a-step"),
        pytest.param({"from": "refresh", "to": "ghost:in"}, ("dangling_edge", "edges[2].to"),
                     id="unknown-node"),
    ],
)
def test_bad_port_ends_are_reported_once(edge, expected):
    g = base_graph()
    g["edges"].append(edge)
    assert error_codes(plan(g)) == [expected]


@pytest.mark.parametrize(
    "config, expected",
    [
        pytest.param({"url": {"$secret": "api-token"}}, [], id="secret-url"),
        pytest.param({"url": "https://x.test", "timeout_s": {"$secret": "api-token"}},
                     [("invalid_config", "nodes[0].config.timeout_s")], id="secret-number"),
        pytest.param({"url": "https://x.test", "json": {"k": {"$secret": 3}}},
                     [("invalid_config", "nodes[0].config.json.k")], id="malformed-reference"),
    ],
)
def test_secret_references_are_checked_as_text(config, expected):
    g = base_graph()
    g["nodes"][0]["config"] = config
    p = plan(g)
    assert error_codes(p) == expected
    if not expected:
        assert jobs(p)["refresh"].spec["config"] == config


def test_interruptible_reaches_the_spec_only_when_set():
    """A cancel terminates running attempts of interruptible jobs; every other spec, and so its
    digest, is what it was before the flag existed."""
    graph = base_graph()
    before = {job_id: job.digest for job_id, job in jobs(plan(graph)).items()}
    graph["nodes"][0]["interruptible"] = True
    graph["nodes"][2]["interruptible"] = False
    after = jobs(plan(graph))
    assert after["refresh"].spec["interruptible"] is True and after["refresh"].digest != before["refresh"]
    assert "interruptible" not in after["load"].spec
    assert {job_id: job.digest for job_id, job in after.items() if job_id != "refresh"} == \
        {job_id: digest for job_id, digest in before.items() if job_id != "refresh"}


def test_interruptible_inside_a_blueprint_reaches_its_job():
    blueprint = copy.deepcopy(BLUEPRINT)
    blueprint["nodes"][0]["interruptible"] = True
    assert jobs(plan(blueprints={("fanout", 1): blueprint}))["harvest/fetch"].spec["interruptible"] is True
