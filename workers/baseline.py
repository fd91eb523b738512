"""Bare Celery tasks: the baseline `bench/engine_overhead.py` measures the engine against.

Loaded only by the benchmark's workers (`celery worker --include workers.baseline`).
"""
from workers.celery import app


@app.task(name="flowplane.baseline.noop", acks_late=True)
def noop(*args, **kwargs):
    return None
