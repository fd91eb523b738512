"""Schedules and `on` keys of a graph document: cron and timezone checks, ticks, the plan's
schedule diff, chain loops, and webhook signatures. No database."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from pipelines import signatures
from pipelines.cron import CronError, parse_cron, zone_info
from pipelines.errors import ISSUE_CODES
from pipelines.plan_format import format_plan, plan_from_json, plan_to_json
from pipelines.planner import FleetSnapshot, GroupState, plan_deployment
from pipelines.triggers import (
    ScheduleSpec,
    chain_cycle,
    chain_specs,
    diff_schedules,
    schedule_specs,
    status_matches,
)
from pipelines.validation import validate_graph

UTC = timezone.utc


def graph(**top):
    return {"nodes": [{"id": "a", "type": "noop", "group": "ingest"}], "edges": [], **top}


def nightly(**kw):
    return {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", **kw}


# --------------------------------------------------------------------------- cron


@pytest.mark.parametrize("text, field", [
    pytest.param("0 2 * *", "five", id="four-fields"),
    pytest.param("60 * * * *", "minute", id="minute-too-big"),
    pytest.param("* 24 * * *", "hour", id="hour-too-big"),
    pytest.param("* * 0 * *", "day_of_month", id="day-zero"),
    pytest.param("* * * 13 *", "month", id="month-13"),
    pytest.param("* * * * funday", "day_of_week", id="bad-weekday-name"),
    pytest.param("5-1 * * * *", "backwards", id="range-backwards"),
    pytest.param("*/0 * * * *", "minute", id="step-zero"),
])
def test_bad_cron_names_the_field(text, field):
    with pytest.raises(CronError, match=field):
        parse_cron(text)


def test_cron_names_and_sunday_as_seven():
    cron = parse_cron("*/15 2-4 * jan-mar mon-fri")
    assert cron.minutes == {0, 15, 30, 45} and cron.hours == {2, 3, 4} and cron.months == {1, 2, 3}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("0 0 * * 7").crontab_fields() == {"minute": "0", "hour": "0", "day_of_month": "*",
                                                         "month_of_year": "*", "day_of_week": "0"}


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", 5])
def test_unknown_timezone_is_refused(name):
    with pytest.raises(CronError, match="timezone"):
        zone_info(name)


def test_previous_tick_is_read_in_the_schedule_timezone():
    cron = parse_cron("0 2 * * *")
    # 02:00 in Paris is 01:00 UTC in winter
    assert cron.previous(datetime(2026, 12, 1, 1, 30, tzinfo=UTC), "Europe/Paris") == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert cron.previous(datetime(2026, 12, 1, 0, 59, tzinfo=UTC), "Europe/Paris") == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    # 02:00 on 29 March 2026 does not exist in Paris (clocks jump to 03:00): that day does not fire
    assert cron.previous(datetime(2026, 3, 29, 5, 0, tzinfo=UTC), "Europe/Paris") == datetime(2026, 3, 28, 1, 0, tzinfo=UTC)


def test_ticks_between_is_oldest_first_and_bounded():
    cron = parse_cron("*/10 * * * *")
    start, end = datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 0, 35, tzinfo=UTC)
    assert [t.minute for t in cron.ticks_between(start, end, "UTC")] == [10, 20, 30]
    assert [t.minute for t in cron.ticks_between(start, end, "UTC", limit=2)] == [20, 30]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("schedules, path", [
    pytest.param([nightly(cron="0 25 * * *")], "schedules[0].cron", id="bad-cron"),
    pytest.param([nightly(timezone="Europe/Atlantis")], "schedules[0].timezone", id="bad-timezone"),
    pytest.param([nightly(overlap="queue")], "schedules[0].overlap", id="bad-overlap"),
    pytest.param([nightly(catchup_window_s=-1)], "schedules[0].catchup_window_s", id="negative-window"),
    pytest.param([nightly(every_s=30)], "schedules[0]", id="cron-and-every"),
    pytest.param([{"name": "x"}], "schedules[0]", id="neither-cron-nor-every"),
    pytest.param([nightly(), nightly()], "schedules[1].name", id="duplicate-name"),
    pytest.param([nightly(name="Nightly Run")], "schedules[0].name", id="bad-name"),
    pytest.param([nightly(when="now")], "schedules[0].when", id="unknown-field"),
    pytest.param({"nightly": nightly()}, "schedules", id="not-a-list"),
    pytest.param([nightly(input=[1])], "schedules[0].input", id="input-not-mapping"),
])
def test_schedule_problems_are_reported_with_their_path(schedules, path):
    report = validate_graph(graph(schedules=schedules))
    assert not report.ok
    assert path in {i.path for i in report.issues}
    assert all(i.code in ISSUE_CODES for i in report.issues)


@pytest.mark.parametrize("on, path", [
    pytest.param({"workflow": "up", "status": "done"}, "on.status", id="bad-status"),
    pytest.param({"status": "succeeded"}, "on.workflow", id="no-workflow"),
    pytest.param([{"workflow": "up"}, {"workflow": "x y"}], "on[1].workflow", id="list-bad-slug"),
    pytest.param("up", "on", id="not-a-mapping"),
])
def test_on_problems_are_reported_with_their_path(on, path):
    report = validate_graph(graph(on=on))
    assert path in {i.path for i in report.issues}


def test_valid_triggers_read_back_with_defaults():
    doc = graph(schedules=[nightly(), {"name": "ping", "every_s": 5, "overlap": "buffer_one"}],
                on=[{"workflow": "ingest"}, {"workflow": "audit", "status": "any"}])
    assert validate_graph(doc).ok
    specs = {s.name: s for s in schedule_specs(doc)}
    assert specs["nightly"].when == "0 2 * * * Europe/Paris" and specs["nightly"].overlap == "skip"
    assert specs["ping"].when == "every 5s" and specs["ping"].timezone == "UTC"
    assert [c.to_dict() for c in chain_specs(doc)] == [{"workflow": "audit", "status": "any"},
                                                       {"workflow": "ingest", "status": "succeeded"}]
    assert schedule_specs(graph(schedules=[])) == () and schedule_specs(graph()) == ()


@pytest.mark.parametrize("wanted, status, fires", [
    ("succeeded", "succeeded", True), ("succeeded", "failed", False), ("failed", "compensated", True),
    ("failed", "succeeded", False), ("any", "compensation_failed", True), ("any", "cancelled", False),
])
def test_status_matches(wanted, status, fires):
    assert status_matches(wanted, status) is fires


# --------------------------------------------------------------------------- chain loops


@pytest.mark.parametrize("workflow, upstreams, others, cycle", [
    pytest.param("a", ["b"], {"b": ["a"]}, ["a", "b", "a"], id="a-b-a"),
    pytest.param("a", ["c"], {"b": ["a"], "c": ["b"]}, ["a", "b", "c", "a"], id="three-workflows"),
    pytest.param("a", ["a"], {}, ["a", "a"], id="itself"),
    pytest.param("a", ["b"], {"b": ["c"], "c": []}, None, id="no-loop"),
    pytest.param("a", ["b"], {"a": ["b", "c"], "c": ["a"]}, None, id="own-old-triggers-ignored"),
])
def test_chain_cycle_is_the_path_in_run_order(workflow, upstreams, others, cycle):
    assert chain_cycle(workflow, upstreams, others) == cycle


# --------------------------------------------------------------------------- plan diff


def test_diff_schedules_create_update_delete_noop():
    old = {s.name: s for s in schedule_specs(graph(schedules=[nightly(), {"name": "keep", "every_s": 60},
                                                              {"name": "gone", "cron": "0 6 * * 1"}]))}
    new = schedule_specs(graph(schedules=[nightly(cron="0 3 * * *"), {"name": "keep", "every_s": 60},
                                          {"name": "fresh", "every_s": 10}]))
    changes = {c.name: (c.action, c.fields) for c in diff_schedules(new, old)}
    assert changes == {"nightly": ("update", ("cron",)), "keep": ("noop", ()), "gone": ("delete", ()),
                       "fresh": ("create", ())}


FLEET = FleetSnapshot({"ingest": GroupState("ingest", 1, 4, frozenset({"noop"}))})


def planned(doc, deployed_schedules=None):
    return plan_deployment(doc, blueprints={}, templates={}, placement={}, replicas={}, fleet=FLEET, deployed={},
                           secrets=frozenset(), landing_store="file:///tmp/l", deployed_schedules=deployed_schedules)


def test_plan_shows_schedules_like_jobs_and_round_trips():
    deployed = {s.name: s for s in schedule_specs(graph(schedules=[{"name": "weekly", "cron": "0 6 * * 1"},
                                                                   {"name": "hourly", "cron": "0 * * * *"}]))}
    doc = graph(schedules=[nightly(), {"name": "hourly", "cron": "0 * * * *", "overlap": "buffer_one"}])
    plan = planned(doc, deployed)
    text = format_plan(plan)
    assert "  + schedule nightly 0 2 * * * Europe/Paris" in text
    assert "  ~ schedule hourly 0 * * * * UTC" in text and 'overlap: "skip" -> "buffer_one"' in text
    assert "  - schedule weekly 0 6 * * 1 UTC" in text
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert {c["name"]: c["action"] for c in data["schedule_changes"]} == {
        "hourly": "update", "nightly": "create", "weekly": "delete"}
    assert plan_from_json(data) == plan


def test_explicit_empty_list_deletes_every_deployed_schedule():
    deployed = {s.name: s for s in schedule_specs(graph(schedules=[nightly()]))}
    plan = planned(graph(schedules=[]), deployed)
    assert [(c.name, c.action) for c in plan.schedule_changes] == [("nightly", "delete")]
    assert plan.has_changes and "- schedule nightly" in format_plan(plan)


def test_schedule_only_change_is_a_change_and_bad_schedule_is_a_plan_error():
    plan = planned(graph(schedules=[nightly()]))
    assert plan.has_changes and "No changes" not in format_plan(plan)
    bad = planned(graph(schedules=[nightly(timezone="Nowhere/Land")]))
    assert "schedules[0].timezone" in {i.path for i in bad.errors}


def test_plan_without_schedules_keeps_its_json_shape():
    assert "schedules" not in plan_to_json(planned(graph()))


def test_schedule_spec_round_trips():
    spec = ScheduleSpec("x", None, 5, "UTC", "allow_all", 60, {"k": 1})
    assert ScheduleSpec.from_dict(spec.to_dict()) == spec


# --------------------------------------------------------------------------- signatures

BODY = b'{"order": 7}'


def test_good_signature_with_fresh_timestamp():
    sig = signatures.sign("s1", BODY, 1_000)
    assert signatures.verify(["s1"], BODY, sig, "1000", now=1_100).ok


@pytest.mark.parametrize("secret, body, ts, now, code", [
    pytest.param("other", BODY, "1000", 1_000, signatures.BAD_SIGNATURE, id="wrong-secret"),
    pytest.param("s1", b'{"order": 8}', "1000", 1_000, signatures.BAD_SIGNATURE, id="tampered-body"),
    pytest.param("s1", BODY, "1001", 1_000, signatures.BAD_SIGNATURE, id="tampered-timestamp"),
    pytest.param("s1", BODY, "1000", 1_000 + 301, signatures.STALE_TIMESTAMP, id="stale"),
    pytest.param("s1", BODY, "1000", 1_000 - 301, signatures.STALE_TIMESTAMP, id="future"),
])
def test_bad_signatures_and_stale_timestamps(secret, body, ts, now, code):
    sig = signatures.sign(secret, BODY, 1_000)
    assert signatures.verify(["s1"], body, sig, ts, now=now).code == code


def test_missing_headers_and_rotation():
    assert signatures.verify(["s1"], BODY, None, "1", now=1).code == signatures.MISSING_SIGNATURE
    for ts in ("²", "12a", "-5", ""):
        assert signatures.verify(["s1"], BODY, signatures.sign("s1", BODY, 1), ts, now=1).code == signatures.BAD_SIGNATURE
    new, old = signatures.sign("new", BODY, 5), signatures.sign("old", BODY, 5)
    assert signatures.verify(["new", "old"], BODY, new, "5", now=5).secret_index == 0
    assert signatures.verify(["new", "old"], BODY, old, "5", now=5).secret_index == 1
    assert not signatures.verify(["new"], BODY, old, "5", now=5).ok


def test_github_signature_and_branch():
    sig = signatures.sign("gh", BODY)
    assert signatures.verify_github(["gh"], BODY, sig).ok
    assert signatures.verify_github(["gh"], BODY + b" ", sig).code == signatures.BAD_SIGNATURE
    assert signatures.github_branch({"ref": "refs/heads/main"}) == "main"
    assert signatures.github_branch({"ref": "refs/tags/v1"}) is None


def test_yaml_unquoted_on_key_is_the_chaining_trigger():
    from pipelines.documents import load_document

    text = ("nodes: [{id: a, type: noop, group: ingest}]\nedges: []\n"
            "on: {workflow: ingest, status: any}\n"
            "schedules:\n  - {name: nightly, cron: '0 2 * * *', timezone: Europe/Paris}\n")
    doc = load_document(text)
    assert doc["on"] == {"workflow": "ingest", "status": "any"} and validate_graph(doc).ok


def test_interval_ticks_count_from_the_anchor_in_whole_steps():
    from datetime import datetime, timedelta, timezone

    from pipelines.triggers import first_interval_tick, interval_tick

    utc = timezone.utc
    anchor = datetime(2026, 12, 1, 10, 0, 7, tzinfo=utc)
    assert interval_tick(60, datetime(2026, 12, 1, 10, 5, 30, tzinfo=utc)) == datetime(2026, 12, 1, 10, 5, tzinfo=utc)
    assert interval_tick(60, datetime(2026, 12, 1, 10, 5, 6, tzinfo=utc), anchor) == anchor + timedelta(minutes=4)
    assert interval_tick(60, anchor + timedelta(minutes=4), anchor) == anchor + timedelta(minutes=4)  # a tick is its own
    assert interval_tick(60, anchor - timedelta(seconds=1), anchor) == anchor - timedelta(minutes=1)
    paris = datetime(2026, 12, 1, 11, 5, 30, tzinfo=timezone(timedelta(hours=1)))
    assert interval_tick(60, paris) == datetime(2026, 12, 1, 10, 5, tzinfo=utc)
    assert first_interval_tick(30, datetime(2026, 12, 1, 10, 0, tzinfo=utc)) == datetime(2026, 12, 1, 10, 0, 30, tzinfo=utc)
    # decades of ticks stay exact: no float seconds
    far = datetime(2090, 1, 1, 0, 0, 0, 999_999, tzinfo=utc)
    assert interval_tick(7, far) <= far and (far - interval_tick(7, far)) < timedelta(seconds=7)
