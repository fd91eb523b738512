"""gunicorn's configuration for the web control plane (`gunicorn -c python:controlplane.gunicorn_conf`).

Why gunicorn: a pre-fork WSGI server that runs Django as it is (the views are synchronous, so an
ASGI server such as uvicorn buys nothing), restarts a crashed or hung worker process, and stops
gracefully on SIGTERM; uWSGI is in maintenance mode, waitress is a single process, and Django's
`runserver` starts an unbounded thread per request, each keeping its own database connection
(20 concurrent clients exhausted PostgreSQL's max_connections).

`gthread` workers: WEB_WORKERS processes of WEB_THREADS threads. Each thread keeps at most one
database connection (CONN_MAX_AGE), so the web holds at most WEB_WORKERS * WEB_THREADS
connections, however many clients connect; a slow client ties up one thread, not a process.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

from django.conf import settings  # noqa: E402  (after the settings module is named)

wsgi_app = "controlplane.wsgi:application"
bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = settings.WEB_WORKERS
threads = settings.WEB_THREADS
timeout = settings.WEB_TIMEOUT_S
# SIGTERM: finish the requests in flight for this long, then stop (bin/run waits 10 s in all).
graceful_timeout = 5
accesslog = "-"
errorlog = "-"
# Workers load the app after the fork: no database connection is shared between processes.
preload_app = False
