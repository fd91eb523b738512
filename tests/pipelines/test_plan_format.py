"""Plan text, JSON form and CLI exit codes."""

import json

import pytest

from pipelines.errors import Issue
from pipelines.plan_format import exit_code, format_plan, plan_from_json, plan_to_json, summary_line
from pipelines.planner import Job, JobChange, Plan


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


def test_summary_line_exact():
    changes = [c for c in MIXED if c.job_id != "e"] + [
        JobChange("e", "noop"), JobChange("m", "replace", ("type",), "x", "y", True)]
    assert summary_line(make_plan(MIXED)) == "3 to create, 2 to update, 0 to delete, 1 move"
    assert summary_line(make_plan(changes)) == "3 to create, 1 to update, 0 to delete, 1 move, 1 to replace"
    assert summary_line(make_plan([])) == "0 to create, 0 to update, 0 to delete, 0 moves"


def test_text_has_one_line_per_change_and_hides_unchanged():
    text = format_plan(make_plan(MIXED + [JobChange("gone", "delete"), JobChange("r", "replace", ("type",))]))
    lines = text.splitlines()
    assert "  + a  (noop on ingest)" in lines
    assert "  ~ d  config.url, replicas" in lines
    assert "  ~ e  group ingest -> batch (disruptive)" in lines
    assert "  - gone" in lines
    assert "-/+ r  type -> noop" in lines
    assert not any(line.strip() == "f" for line in lines)
    assert lines[-1] == "Plan: 3 to create, 2 to update, 1 to delete, 1 move, 1 to replace"
    assert "    f" in format_plan(make_plan(MIXED), show_unchanged=True).splitlines()


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


def test_json_refuses_unknown_format_version():
    data = plan_to_json(make_plan([]))
    data["format_version"] = 2
    with pytest.raises(Exception, match="format_version"):
        plan_from_json(data)
