"""The canonical Celery bootstrap: configuration comes from Django settings (CELERY_* names)."""
import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("flowplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")

# Worker-side steps (heartbeat, artifact cache, remote-control commands) and tracing hooks.
from workers.bootsteps import install_bootsteps  # noqa: E402
from workers import telemetry  # noqa: E402,F401  (connects worker_process_init)

install_bootsteps(app)


@task_prerun.connect(weak=False)
def _drop_stale_database_connections(**kwargs) -> None:
    """What Django does at each request start: close connections past CONN_MAX_AGE or broken,
    and health-check the rest before reuse (CELERY_DB_REUSE_MAX keeps Celery from closing all)."""
    from django.db import close_old_connections

    close_old_connections()
