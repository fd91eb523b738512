"""The workers' Celery bootstrap: the control plane's app (`controlplane.core.celery_app`, configured
from Django settings) with the task shims, worker bootsteps and signal handlers registered."""
from controlplane.core.celery_app import app

app.autodiscover_tasks(["workers"], related_name="tasks")
app.autodiscover_tasks(["workers"], related_name="replay_tasks")  # flowplane.dead_letter_rerun

# Worker-side steps (heartbeat, artifact cache, remote-control commands), the database connection
# policy per task, the secret-masking log filter, and tracing hooks.
from workers.bootsteps import install_bootsteps  # noqa: E402
from workers import connections, logmask, telemetry  # noqa: E402,F401  (connect their signal handlers)

install_bootsteps(app)

__all__ = ["app"]
