"""The Celery app, as the control plane knows it: configuration from Django settings (CELERY_*).

The control plane only *sends*: it publishes canvases and tasks by name (`controlplane.executions.
dispatch`) and broadcasts remote-control commands (`controlplane.deployments.broadcast`), so it
needs the app's broker and routing, never the task code. `workers/celery.py` takes this same app,
registers the tasks (`workers.tasks`) and the worker-side bootsteps and signal handlers: arrows
run pipelines <- controlplane <- workers.
"""
import os

from celery import Celery

from controlplane.core import embedded_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
# The embedded default's `atomicfs://` broker and `atomicfile://` results must be known before
# the app opens its first connection.
embedded_broker.register()

app = Celery("flowplane", set_as_current=True)
app.config_from_object("django.conf:settings", namespace="CELERY")
