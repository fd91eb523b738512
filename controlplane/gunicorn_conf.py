"""Gunicorn settings of the web control plane, in every mode (bin/run, the Dockerfile, compose):

    gunicorn -c python:controlplane.gunicorn_conf

Why gunicorn: a pre-fork WSGI server that runs Django as it is (the views are synchronous, so an
ASGI server such as uvicorn buys nothing), restarts a crashed or hung worker process, and stops
gracefully on SIGTERM; uWSGI is in maintenance mode, waitress is a single process, and Django's
`runserver` starts an unbounded thread per request, each keeping its own database connection
(20 concurrent clients exhausted PostgreSQL's max_connections).

Sizing rule. Requests are short and mostly wait on PostgreSQL and Redis, so the `gthread` worker
serves them: one process per core (`WEB_CONCURRENCY`, default the CPU count) with a few threads
each (`WEB_THREADS`, default 4; more threads than this only queue on the GIL of a busy process).
Every thread keeps its own PostgreSQL connection open for `DATABASE_CONN_MAX_AGE` seconds, so the
web tier holds up to WEB_CONCURRENCY x WEB_THREADS connections, and

    web processes x threads + Celery pool sizes + beat + headroom (admin, migrations) <= max_connections

must hold on the database server. The web side of that sum is bounded here: the server refuses to
start when processes x threads exceeds `WEB_DB_CONNECTION_LIMIT` (default 32 of PostgreSQL's
default 100). On this 2-core machine 2 x 4 = 8 connections serve 50 starts/s (bench/api_load.py).
"""
from __future__ import annotations

import os


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise RuntimeError(f"{name}={raw!r} is not {kind}; set it to {minimum} or more, or unset it")
    return value


wsgi_app = "controlplane.wsgi:application"
bind = os.environ.get("WEB_BIND") or "127.0.0.1:8000"
worker_class = "gthread"
workers = _int("WEB_CONCURRENCY", os.cpu_count() or 1)
threads = _int("WEB_THREADS", 4)
db_connection_limit = _int("WEB_DB_CONNECTION_LIMIT", 32)
if workers * threads > db_connection_limit:
    raise RuntimeError(
        f"WEB_CONCURRENCY x WEB_THREADS = {workers} x {threads} = {workers * threads} PostgreSQL connections, above "
        f"WEB_DB_CONNECTION_LIMIT={db_connection_limit}: every web thread keeps one open; lower the processes or "
        "threads, or raise the limit while keeping web + Celery pools + headroom under max_connections"
    )
# Clients that keep their connection (load balancers, API clients) skip a TCP handshake per call.
keepalive = _int("WEB_KEEPALIVE_S", 5, minimum=0)  # 0: close after every response
timeout = _int("WEB_TIMEOUT_S", 30)
# SIGTERM: finish the requests in flight for this long, then stop (bin/run stops within 10 s in all).
graceful_timeout = 5
# Workers load the app after the fork: no database connection is shared between processes.
preload_app = False
# The heartbeat file on tmpfs: a container's overlay disk can stall it and get workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Access logs off unless asked: a line per request costs more than a start's own work at high rates.
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL") or "info"


def post_fork(server, worker):
    """Tracing is set up in each worker process, after the fork: the span exporter's thread does not
    survive one (the OpenTelemetry docs for gunicorn); nothing happens when tracing is off."""
    from controlplane.core import telemetry

    telemetry.instrument_web()
