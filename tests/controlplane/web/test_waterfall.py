"""The waterfall arithmetic: bars on one shared axis, retries as segments, compensations after."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from controlplane.web.waterfall import MIN_WIDTH_PCT, waterfall

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def entry(node_id, start_ms, end_ms, status="succeeded", shard=0, shard_count=1, attempts=None):
    history = attempts or [(1, status, start_ms, end_ms)]
    return {
        "node_id": node_id, "shard": shard, "shard_count": shard_count, "status": status, "attempts": len(history),
        "group": "ingest", "worker": "w1", "started_at": at(start_ms) if start_ms is not None else None,
        "finished_at": at(end_ms) if end_ms is not None else None,
        "duration_ms": end_ms - start_ms if start_ms is not None and end_ms is not None else None,
        "input": {}, "output": {}, "error": None,
        "attempt_history": [{"attempt": n, "status": s, "started_at": at(a) if a is not None else None,
                             "finished_at": at(b) if b is not None else None,
                             "duration_ms": b - a if a is not None and b is not None else None}
                            for n, s, a, b in history],
    }


def timeline(steps, compensations=(), *, start=0, end=1000, status="succeeded"):
    return {"status": status, "started_at": at(start) if start is not None else None,
            "finished_at": at(end) if end is not None else None, "steps": list(steps),
            "compensations": list(compensations)}


def test_bars_are_placed_in_proportion_on_one_axis():
    fall = waterfall(timeline([entry("a", 0, 250), entry("b", 250, 1000)]), now=at(5000))

    a, b = fall.bars
    assert (a.left, a.width, b.left, b.width) == (0.0, 25.0, 25.0, 75.0)
    assert fall.span_ms == 1000 and fall.ticks[0] == (0.0, 0) and fall.ticks[-1] == (100.0, 1000)


def test_a_running_step_reaches_now_and_the_axis_too():
    fall = waterfall(timeline([entry("a", 0, 200), entry("b", 200, None, "running")], end=None, status="running"),
                     now=at(400))

    a, b = fall.bars
    assert fall.span_ms == 400
    assert (a.width, b.left, b.width, b.duration_ms) == (50.0, 50.0, 50.0, 200)


def test_retries_are_segments_of_one_bar_and_compensations_come_last():
    retried = entry("b", 100, 900, attempts=[(1, "failed", 100, 300), (2, "succeeded", 500, 900)])
    fall = waterfall(timeline([entry("a", 0, 100), retried], [entry("a", 900, 1000, "succeeded")]), now=at(2000))

    assert [(bar.node_id, bar.compensation) for bar in fall.bars] == [("a", False), ("b", False), ("a", True)]
    segments = fall.bars[1].segments
    assert [(s.attempt, s.status, s.left, s.width) for s in segments] == [
        (1, "failed", 10.0, 20.0), (2, "succeeded", 50.0, 40.0)]
    assert fall.bars[1].attempts == 2


def test_an_instant_step_stays_visible_and_a_pending_one_has_no_bar():
    fall = waterfall(timeline([entry("a", 0, 0), entry("b", None, None, "pending", attempts=[(1, "pending", None, None)])]),
                     now=at(10))

    a, b = fall.bars
    assert a.width == MIN_WIDTH_PCT and a.duration_ms == 0
    assert (b.width, b.started) == (0.0, False)


@pytest.mark.parametrize("start", [None, 0], ids=["no-start", "started"])
def test_a_run_without_steps_has_an_empty_waterfall(start):
    fall = waterfall(timeline([], start=start, end=None, status="pending"), now=at(10))

    assert fall.bars == ()


def test_shards_keep_their_index_from_zero():
    fall = waterfall(timeline([entry("s", 0, 500, shard=0, shard_count=2), entry("s", 0, 1000, shard=1, shard_count=2)]),
                     now=at(1000))

    assert [(b.shard, b.shard_count, b.width) for b in fall.bars] == [(0, 2, 50.0), (1, 2, 100.0)]
