"""The operator pages in a real browser: sign in, find a workflow's nodes in its SVG, preview a
plan and apply it (and see the 409 when the same plan is applied twice), follow a run live until
it finishes and check its waterfall's bars. (Approving a waiting run: `test_approval_inbox.py`.)"""
from __future__ import annotations

import re

import pytest

from controlplane.deployments.models import DeploymentPlan
from controlplane.executions.models import ExecutionStatus
from tests.controlplane.executions.builders import (
    edges,
    job,
    make_deployment,
    make_group,
    make_live_worker,
    make_version,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NODES = [job("fetch"), job("score", replicas=2), job("announce", "log", group="load", config={"message": "hi"}),
         job("total", group="load", compensate={"type": "noop"})]
EDGES = edges(("fetch", "score"), ("fetch", "announce"), ("score", "total"), ("announce", "total"))


@pytest.fixture
def worker_rows(company, settings):
    """acme's groups with a live worker row each (no process: plans need a live worker per group)."""
    settings.DEPLOY_CONTROL_TIMEOUT_S = 0.05  # rollout broadcasts get no reply: do not wait long
    for slug in ("ingest", "load"):
        make_live_worker(f"{slug}1@browser", make_group(company, slug))


def boxes(page, selector: str, attribute: str) -> dict[str, dict]:
    return {el.get_attribute(attribute): el.bounding_box() for el in page.locator(selector).all()}


def test_sign_in_and_find_the_workflows_nodes_in_its_svg(sign_in, live_server, owner, project, worker_rows):
    workflow = make_version(project, NODES, EDGES, user=owner).workflow
    page = sign_in(owner)

    page.click("nav >> text=Workflows")
    page.click(f"a[href='/workflows/{workflow.pk}/']")

    page.wait_for_selector("svg.graph g[data-node]")
    nodes = boxes(page, "svg.graph g[data-node]", "data-node")
    assert set(nodes) == {"fetch", "score", "announce", "total"}
    assert nodes["fetch"]["x"] < nodes["score"]["x"] < nodes["total"]["x"]  # drawn left to right by layer
    assert nodes["score"]["x"] == nodes["announce"]["x"]
    assert page.locator("svg.graph g[data-node=score]").get_attribute("data-replicas") == "2"
    assert page.locator("svg.graph g[data-node=total] text.comp-text").text_content().startswith("↺")
    assert page.locator("svg.graph path.edge").count() == 4
    fills = {page.locator(f"svg.graph g[data-node={n}] rect.card").evaluate("e => getComputedStyle(e).fill")
             for n in ("fetch", "total")}
    assert len(fills) == 2  # two worker groups, two colours


def test_preview_a_plan_and_apply_it_then_the_same_plan_is_stale(sign_in, live_server, owner, project, worker_rows):
    v1 = make_version(project, NODES, EDGES, user=owner)
    page = sign_in(owner)

    page.goto(f"{live_server.url}/workflows/{v1.workflow.pk}/")
    page.click("text=Preview a plan")
    page.select_option("select[name=version]", "1")
    page.fill("input[name=environment]", "prod")
    page.click("#plan-form button[type=submit]")

    page.wait_for_selector(".plan")
    lines = {el.get_attribute("data-job"): el.locator(".mark").inner_text()
             for el in page.locator(".plan .line[data-job]").all()}
    assert lines == {"fetch": "+", "score": "+", "announce": "+", "total": "+"}
    assert [h.inner_text() for h in page.locator(".plan h3").all()] == ["on ingest", "on load"]
    green = page.locator(".plan .line[data-job=fetch] .mark").evaluate("e => getComputedStyle(e).color")
    assert green == "rgb(21, 128, 61)"
    plan_url = page.url

    page.click("#apply-form button[type=submit]")
    page.wait_for_selector("text=Plan applied")
    assert re.search(r"/deployments/\d+/$", page.url)
    assert page.locator("h2:has-text('Current plan') ~ .plan .line[data-job=score]").count() == 1
    assert DeploymentPlan.objects.get(workflow=v1.workflow).applied_at is not None

    page.goto(plan_url)  # the applied plan shows no button any more; an old tab still has one
    assert page.locator("#apply-form").count() == 0
    page.go_back()
    page.goto(plan_url)
    response = page.request.post(plan_url + "apply/", headers={"X-CSRFToken": _csrf(page), "Referer": plan_url})
    assert response.status == 409 and "went stale" in response.text()


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


@pytest.mark.e2e
def test_a_run_is_followed_live_and_its_waterfall_orders_and_sizes_its_bars(
    sign_in, live_server, owner, project, fleet
):
    from controlplane.executions.services import execution_start
    from tests.e2e.engine_support import wait_for_end

    def sleeper(node_id, seconds, **fields):
        return job(node_id, "python", config={"callable": "sleep", "kwargs": {"seconds": seconds}}, **fields)

    deployment = make_deployment(
        project, [sleeper("gate", 4), sleeper("short", 0.3), sleeper("long", 1.2), sleeper("tail", 0.3)],
        edges(("gate", "short"), ("short", "long"), ("long", "tail")), user=owner)
    page = sign_in(owner)
    execution, _ = execution_start(deployment=deployment, input={}, user=owner)

    page.goto(f"{live_server.url}/executions/{execution.pk}/")  # while `gate` holds the run
    assert page.locator("p.live[data-poll-url]").count() == 1
    page.wait_for_selector("dd .status-succeeded", timeout=60_000)  # the page reloaded itself as the run went

    assert wait_for_end(execution, timeout=30).status == ExecutionStatus.SUCCEEDED
    assert page.locator("p.live").count() == 0  # finished: no more polling
    assert [row.get_attribute("data-step") for row in page.locator("#waterfall .wf-row").all()] == [
        "gate", "short", "long", "tail"]
    bars = {row.get_attribute("data-step"): row.locator(".wf-bar").bounding_box()
            for row in page.locator("#waterfall .wf-row").all()}
    gate, short, long, tail = bars["gate"], bars["short"], bars["long"], bars["tail"]
    assert gate["x"] < short["x"] < long["x"] < tail["x"]  # one after the other on the shared axis
    assert short["x"] + short["width"] <= long["x"] + 2 and long["x"] + long["width"] <= tail["x"] + 2
    assert 2.5 < long["width"] / short["width"] < 5.5  # 1.2 s against 0.3 s, plus each step's overhead
    assert 2.0 < gate["width"] / long["width"] < 4.5  # 4 s against 1.2 s
    page.locator("#waterfall .wf-row[data-step=long] summary").click()
    assert '"seconds": 1.2' in page.locator("#waterfall .wf-row[data-step=long] pre.step-input").inner_text()
    assert page.locator("#waterfall .wf-row[data-step=long]").get_attribute("data-shard") == "0"
