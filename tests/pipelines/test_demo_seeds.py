"""The example graphs `bin/run` seeds validate, and draw (ids, layers) as the README says."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.graph_layout import layout_graph
from pipelines.validation import validate_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["demo-graph.yaml", "demo-harvest.yaml", "demo-booking.yaml"])
def test_a_seed_validates(name):
    report = validate_graph(yaml.safe_load((EXAMPLES / name).read_text()))

    assert report.ok, report.issues


def test_the_harvest_fans_out_then_runs_related_and_metrics_in_parallel():
    layout = layout_graph(yaml.safe_load((EXAMPLES / "demo-harvest.yaml").read_text()))

    assert {n.id: n.layer for n in layout.nodes} == {
        "refresh": 0, "discover": 1, "ingest": 2, "related": 3, "metrics": 3, "load": 4}
    assert layout.node("ingest").replicas == 2


def test_the_booking_saga_compensates_its_first_two_steps():
    layout = layout_graph(yaml.safe_load((EXAMPLES / "demo-booking.yaml").read_text()))

    assert [(n.id, n.compensate) for n in layout.nodes] == [
        ("reserve-seat", "log"), ("charge-card", "log"), ("issue-ticket", None)]
