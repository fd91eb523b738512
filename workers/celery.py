"""The canonical Celery bootstrap: configuration comes from Django settings (CELERY_* names)."""
import os

from celery import Celery

from workers import embedded_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
# The embedded default's `atomicfs://` broker and `atomicfile://` results must be known before
# the app opens its first connection.
embedded_broker.register()

app = Celery("flowplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")

# Worker-side steps (heartbeat, artifact cache, remote-control commands), the database connection
# policy per task, the secret-masking log filter, and tracing hooks.
from workers.bootsteps import install_bootsteps  # noqa: E402
from workers import connections, logmask, telemetry  # noqa: E402,F401  (connect their signal handlers)

install_bootsteps(app)

