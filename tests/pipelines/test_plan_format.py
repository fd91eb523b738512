"""Plan text, JSON form and CLI exit codes."""

import json

import pytest

from pipelines.errors import Issue
from pipelines.job_diff import ABSENT, FieldChange
from pipelines.plan_format import (
    VALUE_WIDTH,
    exit_code,
    format_plan,
    plan_from_json,
    plan_to_json,
    show_value,
    summary_line,
)
from pipelines.planner import DeployedJob, Job, JobChange, Plan, diff_jobs


def job(job_id, type_="noop", group="ingest", replicas=1):
    spec = {"type": type_, "config": {"token": {"$secret": "api-token"}}, "group": group, "replicas": replicas}
    return Job(job_id, type_, group, replicas, spec, "sha256:" + "0" * 64, f"nodes[{len(job_id)}]")


def make_plan(changes, errors=(), warnings=()):
    jobs = tuple(job(c.job_id) for c in changes if c.action != "delete")
    return Plan(jobs=jobs, edges=(), changes=tuple(changes), errors=tuple(errors), warnings=tuple(warnings))


MIXED = [
    JobChange("a", "create"), JobChange("b", "create"), JobChange("c", "create"),
    JobChange("d", "update", ("config.url", "replicas")),
    JobChange("e", "update", ("group",), moved_from="ingest", moved_to="batch", disruptive=True),
    JobChange("f", "noop"),
]


def test_summary_line_counts_each_job_once():
    changes = [c for c in MIXED if c.job_id != "e"] + [
        JobChange("e", "noop"), JobChange("m", "replace", ("type",), "x", "y", True)]
    assert summary_line(make_plan(MIXED)) == "3 to add, 1 to change, 0 to destroy, 1 to move"
    assert summary_line(make_plan(changes)) == "3 to add, 1 to change, 0 to destroy, 0 to move, 1 to replace"
    assert summary_line(make_plan([])) == "0 to add, 0 to change, 0 to destroy, 0 to move"


def test_a_moved_job_is_a_move_not_also_a_change():
    moved = JobChange("e", "update", ("config.url", "group"), "ingest", "batch", True)
    p = make_plan([JobChange("a", "create"), JobChange("d", "update", ("replicas",)), moved])
    assert p.summary == {"create": 1, "update": 1, "delete": 0, "replace": 0, "noop": 0, "move": 1}
    assert sum(p.summary.values()) == len(p.changes)
    assert format_plan(p).splitlines()[-1] == "Plan: 1 to add, 1 to change, 0 to destroy, 1 to move"


def test_text_has_one_line_per_change_and_hides_unchanged():
    text = format_plan(make_plan(MIXED + [JobChange("gone", "delete"), JobChange("r", "replace", ("type",))]))
    lines = text.splitlines()
    assert "  + a  (noop on ingest)" in lines
    assert "  ~ d  config.url, replicas" in lines  # a change without recorded values: the field names
    assert "  ~ e  moves ingest -> batch (disruptive)" in lines
    assert "  - gone" in lines
    assert "-/+ r  type  (type changes: destroyed and created again)" in lines
    assert not any(line.strip() == "f" for line in lines)
    assert lines[-1] == "Plan: 3 to add, 1 to change, 1 to destroy, 1 to move, 1 to replace"
    assert "    f" in format_plan(make_plan(MIXED), show_unchanged=True).splitlines()


def test_update_lines_show_old_and_new_values_as_compact_json():
    values = (
        FieldChange("config.headers", {"b": 1, "a": [1, 2]}, {"a": [1]}),
        FieldChange("config.url", "https://a.test/x", "https://b.test/x"),
        FieldChange("group", "ingest", "batch"),
        FieldChange("replicas", 1, 3),
        FieldChange("timeout_s", ABSENT, 30),
        FieldChange("retry", {"max_attempts": 3}, ABSENT),
    )
    change = JobChange("d", "update", tuple(v.path for v in values), "ingest", "batch", True, values)
    lines = format_plan(make_plan([change])).splitlines()
    assert lines[:6] == [
        "  ~ d  moves ingest -> batch (disruptive)",
        '        config.headers: {"a":[1,2],"b":1} -> {"a":[1]}',
        '        config.url: "https://a.test/x" -> "https://b.test/x"',
        "        replicas: 1 -> 3",
        "        timeout_s: (absent) -> 30",
        '        retry: {"max_attempts":3} -> (absent)',
    ]  # the group change is the move on the first line, not repeated


@pytest.mark.parametrize(
    "value, shown",
    [
        pytest.param("x" * 100, '"' + "x" * 56 + "...", id="long-string"),
        pytest.param(list(range(100)), "[" + ",".join(map(str, range(100)))[:56] + "...",
                     id="long-list"),
        pytest.param({"k": "\u00e9t\u00e9"}, '{"k":"\u00e9t\u00e9"}', id="unicode-kept"),
        pytest.param(None, "null", id="null-is-not-absent"),
        pytest.param(ABSENT, "(absent)", id="absent"),
    ],
)
def test_values_are_one_line_and_cut_to_width(value, shown):
    assert show_value(value) == shown
    assert len(show_value(value)) <= VALUE_WIDTH and "\n" not in show_value(value)


def test_values_of_a_real_diff_reach_the_text():
    old = job("x")
    new = Job("x", "noop", "ingest", 2, {**old.spec, "replicas": 2, "config": {"token": "t\nwo"}}, "sha256:" + "1" * 64, "n")
    [change] = diff_jobs([new], {"x": DeployedJob.from_job(old)})
    text = format_plan(Plan(jobs=(new,), edges=(), changes=(change,)))
    assert '        config.token: {"$secret":"api-token"} -> "t\\nwo"' in text.splitlines()
    assert "        replicas: 1 -> 2" in text.splitlines()


def test_text_lists_errors_and_warnings_with_paths():
    p = make_plan([JobChange("a", "create")],
                  errors=[Issue("nodes[3].group", "unknown worker group 'gpu'", "unknown_group")],
                  warnings=[Issue("fleet.ingest", "needs 9 replicas but has 8 live slots", "capacity")])
    text = format_plan(p)
    assert "Error: nodes[3].group: unknown_group: unknown worker group 'gpu'" in text
    assert "Warning: fleet.ingest: capacity: needs 9 replicas but has 8 live slots" in text


@pytest.mark.parametrize(
    "changes, errors, code",
    [
        pytest.param([JobChange("a", "noop")], [], 0, id="no-changes"),
        pytest.param([JobChange("a", "create")], [], 2, id="changes"),
        pytest.param([JobChange("a", "create")], [Issue("p", "m", "unknown_group")], 1, id="errors"),
        pytest.param([JobChange("a", "noop")], [Issue("p", "m", "missing_secret")], 1, id="errors-no-changes"),
    ],
)
def test_exit_codes(changes, errors, code):
    assert exit_code(make_plan(changes, errors)) == code


def test_json_form_is_versioned_json_safe_and_round_trips():
    p = make_plan(MIXED, warnings=[Issue("fleet.ingest", "m", "capacity")])
    data = plan_to_json(p)
    assert data["format_version"] == 1
    assert set(data) == {"format_version", "jobs", "edges", "changes", "errors", "warnings", "summary"}
    assert data["summary"]["create"] == 3 and data["summary"]["move"] == 1
    assert data["warnings"] == [{"path": "fleet.ingest", "message": "m", "code": "capacity"}]
    assert data["jobs"][0]["spec"]["config"]["token"] == {"$secret": "api-token"}
    assert plan_from_json(json.loads(json.dumps(data))) == p


def test_json_keeps_old_and_new_values_and_which_side_is_absent():
    values = (FieldChange("timeout_s", ABSENT, 30), FieldChange("retry", None, ABSENT), FieldChange("replicas", 1, 2))
    p = make_plan([JobChange("d", "update", ("timeout_s", "retry", "replicas"), values=values)])
    data = plan_to_json(p)
    assert data["changes"][0]["values"] == [
        {"path": "timeout_s", "new": 30}, {"path": "retry", "old": None}, {"path": "replicas", "old": 1, "new": 2}]
    assert plan_from_json(json.loads(json.dumps(data))) == p


def test_json_of_a_plan_stored_before_values_still_reads():
    data = plan_to_json(make_plan([JobChange("d", "update", ("replicas",))]))
    del data["changes"][0]["values"]
    assert plan_from_json(data).changes[0].values == ()


def test_json_refuses_unknown_format_version():
    data = plan_to_json(make_plan([]))
    data["format_version"] = 2
    with pytest.raises(Exception, match="format_version"):
        plan_from_json(data)
