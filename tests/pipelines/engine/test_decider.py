"""What a delivery does, decided from a tiny graph and a literal history (no database)."""
from __future__ import annotations

import random

import pytest

from pipelines.engine import (
    DEAD_LETTER,
    DEFER,
    DONE,
    FAIL,
    FINISH,
    IGNORE,
    RETRY,
    RUN,
    SKIP,
    WAIT,
    DeliveryFacts,
    decide,
    decide_finish,
    settle,
)
from pipelines.engine.decider import DUPLICATE, EXPIRED, NOT_RUNNING, PROCESS_GONE, RECORDED, RETRIED
from pipelines.engine.limits import MAX_WAITS
from tests.pipelines.engine.graphs import NOW, RUN_ID, attempt, graph, job, snapshot

LOOKED = DeliveryFacts(task_id="t-2", claimer_gone=False)  # a locked caller that looked at the claimer
CHAIN = graph([job("a"), job("b", retry={"max_attempts": 3})], [("a", "b")])


def test_a_first_delivery_runs_attempt_one_with_the_shards_key():
    decision = decide(CHAIN, "a", 0, snapshot(), LOOKED, NOW)

    assert (decision.kind, decision.attempt, decision.idempotency_key, decision.lose) == (RUN, 1, f"{RUN_ID}:a:0", None)


@pytest.mark.parametrize("status", ["failed", "compensating", "cancelled"])
def test_a_run_that_is_not_running_ignores_every_delivery(status):
    decision = decide(CHAIN, "a", 0, snapshot(status=status), LOOKED, NOW)
    assert (decision.kind, decision.reason, decision.status) == (IGNORE, NOT_RUNNING, status)


@pytest.mark.parametrize("status", ["succeeded", "skipped"])
def test_a_recorded_shard_is_not_run_again(status):
    decision = decide(CHAIN, "a", 0, snapshot(attempt("a", status)), LOOKED, NOW)
    assert (decision.kind, decision.reason, decision.status) == (IGNORE, RECORDED, status)


def test_a_running_attempt_on_a_live_claimer_makes_a_duplicate():
    decision = decide(CHAIN, "a", 0, snapshot(attempt("a", "running")), LOOKED, NOW)
    assert (decision.kind, decision.reason) == (IGNORE, DUPLICATE)


def test_a_running_attempt_without_its_claim_read_defers_to_a_caller_that_reads_it():
    decision = decide(CHAIN, "a", 0, snapshot(attempt("a", "running", task_id=None)), DeliveryFacts(), NOW)
    assert decision.kind == DEFER
    looked_not = decide(CHAIN, "a", 0, snapshot(attempt("a", "running")), DeliveryFacts(task_id="t-2"), NOW)
    assert looked_not.kind == DEFER  # nobody looked at the claiming process


def test_a_dead_claimer_is_lost_first_and_counts_against_max_attempts():
    b_running = attempt("b", "running", pid=77)
    history = snapshot(attempt("a", "succeeded"), b_running)

    decision = decide(CHAIN, "b", 0, history, DeliveryFacts(task_id="t-2", claimer_gone=True), NOW)

    # Recorded lost now, then the node's retry delay after it, as after a failed attempt.
    assert decision.kind == WAIT and 0 <= decision.countdown <= 1.0  # b's default backoff: 1 s, full jitter
    assert (decision.lose.record, decision.lose.cause, decision.lose.counts) == (b_running, PROCESS_GONE, True)
    assert "pid 77" in decision.lose.reason
    after = snapshot(attempt("a", "succeeded"), attempt("b", "lost"))
    assert (decide(CHAIN, "b", 0, after, LOOKED, NOW).kind, decide(CHAIN, "b", 0, after, LOOKED, NOW).attempt) \
        == (RUN, 2)


@pytest.mark.parametrize("retry, countdown", [
    ({"max_attempts": 3, "initial_delay_s": 4, "jitter": False}, 4.0),
    ({"max_attempts": 3, "initial_delay_s": 4, "max_delay_s": 2.5, "jitter": False}, 2.5),
    ({"max_attempts": 3, "initial_delay_s": 4, "backoff": "fixed", "jitter": False}, 4.0),
    ({"max_attempts": 3, "initial_delay_s": 0, "jitter": False}, None),
], ids=["exponential", "capped", "fixed", "no delay: runs at once"])
def test_a_counted_loss_waits_the_node_s_retry_delay_for_that_attempt(retry, countdown):
    g = graph([job("a", retry=retry)])
    lost_second = snapshot(attempt("a", "lost", attempt=1), attempt("a", "running", attempt=2, pid=5))

    decision = decide(g, "a", 0, lost_second, DeliveryFacts(task_id="t-2", claimer_gone=True), NOW)

    if countdown is None:
        assert (decision.kind, decision.attempt) == (RUN, 3)
    else:  # the delay after attempt 2, doubled from the first unless fixed or capped
        expected = countdown if retry.get("backoff") == "fixed" or "max_delay_s" in retry else countdown * 2
        assert (decision.kind, decision.countdown, decision.lose.record.attempt) == (WAIT, expected, 2)


def test_a_loss_that_does_not_count_and_a_compensation_s_loss_follow_the_same_rule():
    g = graph([job("a", retry={"max_attempts": 3, "initial_delay_s": 2, "jitter": False})])
    running = attempt("a", "running", task_id="t-1", retries=0)
    # The engine's own database failed under it: the same task's retry takes over at once.
    taken_over = decide(g, "a", 0, snapshot(running), DeliveryFacts(task_id="t-1", retries=1, claimer_gone=False), NOW)
    assert (taken_over.kind, taken_over.lose.counts) == (RUN, False)
    lost = attempt("a", "running", compensation=True)
    compensation = decide(g, "a", 0, snapshot(attempt("a", "succeeded"), lost, status="compensating"),
                          DeliveryFacts(task_id="t-2", claimer_gone=True), NOW, compensation=True)
    assert (compensation.kind, compensation.countdown) == (WAIT, 2.0)


def test_with_one_attempt_a_killed_claimer_fails_the_node_for_good():
    decision = decide(CHAIN, "a", 0, snapshot(attempt("a", "running")), DeliveryFacts(task_id="t-2",
                      claimer_gone=True), NOW)

    assert (decision.kind, decision.attempt, decision.lose.cause) == (DEAD_LETTER, 2, PROCESS_GONE)
    assert decision.error["details"] == {"reason": "lost_repeatedly", "lost": 1}
    assert decision.error["retryable"] is False


def test_a_later_try_of_the_claiming_task_takes_over_without_using_an_attempt():
    running = attempt("a", "running", task_id="t-1", retries=0)

    decision = decide(CHAIN, "a", 0, snapshot(running), DeliveryFacts(task_id="t-1", retries=1, claimer_gone=False),
                      NOW)

    assert (decision.kind, decision.attempt, decision.lose.cause, decision.lose.counts) == (RUN, 2, RETRIED, False)


def test_attempts_lost_to_the_database_are_bounded_on_their_own():
    lost = [attempt("a", "lost", attempt=n, counts=False) for n in (1, 2, 3)]

    decision = decide(CHAIN, "a", 0, snapshot(*lost), DeliveryFacts(claimer_gone=False, max_uncounted_lost=3), NOW)

    assert decision.kind == DEAD_LETTER and decision.error["details"]["reason"] == "lost_repeatedly"
    assert decide(CHAIN, "a", 0, snapshot(*lost[:2]), DeliveryFacts(claimer_gone=False), NOW).kind == RUN


def test_an_attempt_past_its_hard_time_limit_is_lost():
    g = graph([job("a", timeout_s=1, retry={"max_attempts": 2})])
    old = attempt("a", "running", seconds_ago=60)

    decision = decide(g, "a", 0, snapshot(old), LOOKED, NOW)

    assert (decision.kind, decision.lose.cause) == (WAIT, EXPIRED)
    assert decide(g, "a", 0, snapshot(attempt("a", "running", seconds_ago=2)), LOOKED, NOW).kind == IGNORE


def test_lost_and_failed_attempts_share_the_budget():
    history = snapshot(attempt("a", "succeeded"), attempt("b", "failed", attempt=1), attempt("b", "lost", attempt=2))

    assert decide(CHAIN, "b", 0, history, LOOKED, NOW).kind == RUN  # 2 of 3 used
    history = snapshot(*history.attempts[("a", 0)], *history.attempts[("b", 0)], attempt("b", "lost", attempt=3))
    decision = decide(CHAIN, "b", 0, history, LOOKED, NOW)
    assert (decision.kind, decision.attempt) == (DEAD_LETTER, 4)
    assert decision.error["details"] == {"reason": "attempts_exhausted", "lost": 2, "failed": 1, "max_attempts": 3}


def test_a_node_waits_for_its_predecessors_then_gives_up():
    decision = decide(CHAIN, "b", 0, snapshot(), LOOKED, NOW)
    assert (decision.kind, decision.status) == (WAIT, "waiting") and decision.countdown > 0
    gave_up = decide(CHAIN, "b", 0, snapshot(), DeliveryFacts(retries=MAX_WAITS, claimer_gone=False), NOW)
    assert gave_up.kind == FAIL and gave_up.error["message"].startswith("gave up waiting")


def test_a_node_whose_edges_are_dead_is_skipped():
    g = graph([job("check", "condition"), job("yes"), job("no")], [("check", "yes", "true"), ("check", "no", "false")])
    history = snapshot(attempt("check", "succeeded", output={"branch": "true"}))

    assert decide(g, "yes", 0, history, LOOKED, NOW).kind == RUN
    skipped = decide(g, "no", 0, history, LOOKED, NOW)
    assert (skipped.kind, skipped.attempt) == (SKIP, 1)


def test_a_compensation_runs_once_with_its_own_key_and_never_waits():
    comp = graph([job("a", compensate={"type": "noop"}), job("b")], [("a", "b")])

    first = decide(comp, "a", 0, snapshot(status="compensating"), LOOKED, NOW, compensation=True)
    assert (first.kind, first.attempt, first.idempotency_key) == (RUN, 1, f"{RUN_ID}:a:0:compensate")
    done = snapshot(attempt("a", "succeeded", compensation=True), status="compensating")
    assert decide(comp, "a", 0, done, LOOKED, NOW, compensation=True).reason == RECORDED
    assert decide(comp, "a", 0, snapshot(), LOOKED, NOW, compensation=True).reason == NOT_RUNNING


def test_settle_retries_a_retryable_failure_with_attempts_left_and_dead_letters_the_last():
    b = CHAIN.job("b")
    error = {"message": "boom", "retryable": True}

    assert settle(b, 1, None, running=True).kind == DONE
    retry = settle(b, 1, error, running=True, rand=random.Random(1))
    assert retry.kind == RETRY and 0 <= retry.countdown <= 1.0
    assert settle(b, 3, error, running=True).kind == DEAD_LETTER
    assert settle(b, 1, {**error, "retryable": False}, running=True).kind == DEAD_LETTER
    assert settle(b, 1, error, running=False).kind == DEAD_LETTER  # the run already failed
    assert settle(b, 3, error, running=True, compensation=True).kind == FAIL


def test_the_finish_waits_for_pending_nodes_and_lists_the_skipped():
    g = graph([job("a"), job("b")])
    assert decide_finish(g, snapshot(attempt("a", "succeeded")), DeliveryFacts()).kind == WAIT
    finish = decide_finish(g, snapshot(attempt("a", "succeeded"), attempt("b", "skipped")), DeliveryFacts())
    assert (finish.kind, finish.skipped) == (FINISH, ("b",))
    assert decide_finish(g, snapshot(status="succeeded"), DeliveryFacts()).reason == RECORDED


def test_the_engine_imports_without_django_or_celery():
    import subprocess
    import sys

    code = ("import sys, pipelines.engine; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery', 'kombu')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
