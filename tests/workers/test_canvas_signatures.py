"""The canvas builder: exactly one task, the one that runs last, finishes the run."""
import pytest

from pipelines.canvas import CanvasNode, compile_canvas
from controlplane.executions.dispatch import build_signature, chord_parts_need_results, finish_task_id

SHAPES = {
    "single": ([CanvasNode("a")], []),
    "chain": ([CanvasNode("a"), CanvasNode("b")], [("a", "b")]),
    "diamond": ([CanvasNode(n) for n in "abcd"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]),
    "fan-out-to-end": ([CanvasNode(n) for n in "abc"], [("a", "b"), ("a", "c")]),
    "replicated-last": ([CanvasNode("a"), CanvasNode("b", replicas=3)], [("a", "b")]),
}


def _kind(sig) -> str | None:
    return sig.get("subtask_type")  # Celery marks chains, chords and groups this way


def _tasks(sig):
    kind = _kind(sig)
    if kind in ("chain", "group"):
        for item in sig.tasks:
            yield from _tasks(item)
    elif kind == "chord":
        for item in sig.tasks:
            yield from _tasks(item)
        yield from _tasks(sig.body)
    else:
        yield sig


def _last(sig):
    kind = _kind(sig)
    if kind == "chain":
        return _last(sig.tasks[-1])
    if kind == "chord":
        return _last(sig.body)
    return sig


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_exactly_the_last_task_is_final_and_carries_the_finish_id(shape):
    nodes, edges = SHAPES[shape]
    plan = compile_canvas(nodes, edges)

    sig = build_signature("run-1", plan.to_dict(), {None: "wg.acme.ingest"})

    finals = [t for t in _tasks(sig) if t.kwargs.get("final")]
    assert finals == [_last(sig)]
    assert finals[0].options["task_id"] == finish_task_id("run-1")
    assert all(t.name != "flowplane.finish" for t in _tasks(sig))


def _header_tasks(sig, inside: bool = False):
    """Every task that is (part of) a chord header part."""
    kind = _kind(sig)
    if kind in ("chain", "group"):
        for item in sig.tasks:
            yield from _header_tasks(item, inside)
    elif kind == "chord":
        for item in sig.tasks:
            yield from _header_tasks(item, True)
        yield from _header_tasks(sig.body, inside)
    elif inside:
        yield sig


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_only_the_last_task_and_chord_header_parts_keep_their_results(shape):
    # Outputs live in the store; a result in the backend is read only for the run's end (the
    # finish id) and, on backends without native chords, for a chord header's parts.
    nodes, edges = SHAPES[shape]
    sig = build_signature("run-1", compile_canvas(nodes, edges).to_dict(), {None: "wg.acme.ingest"})

    kept = [t for t in _tasks(sig) if not t.options.get("ignore_result")]
    header = list(_header_tasks(sig)) if chord_parts_need_results() else []  # Redis counts parts itself
    assert _last(sig) in kept
    assert all(t in kept for t in header)
    assert len(kept) == len(header) + (0 if _last(sig) in header else 1)


def test_chord_parts_keep_their_results_only_where_the_backend_joins_chords_through_them(monkeypatch):
    from celery.backends.redis import RedisBackend

    from controlplane.core.celery_app import app

    nodes, edges = SHAPES["diamond"]
    canvas = compile_canvas(nodes, edges).to_dict()

    def header_results_kept(backend) -> list[bool]:
        monkeypatch.setattr(type(app), "backend", backend, raising=False)
        sig = build_signature("run-1", canvas, {None: "wg.acme.ingest"})
        return [not t.options.get("ignore_result") for t in _header_tasks(sig)]

    redis = RedisBackend(app=app, url="redis://127.0.0.1:6379/4")
    assert header_results_kept(redis) == [False, False]  # its chord list holds the parts' states
    assert header_results_kept(object()) == [True, True]  # a backend that polls stored results
