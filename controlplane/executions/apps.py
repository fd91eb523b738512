from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "controlplane.executions"
    label = "executions"
    verbose_name = "Executions"

    def ready(self) -> None:
        from controlplane.executions.services import step_runs_recover_lost
        from controlplane.fleet import hooks

        # Attempts running on a worker that went offline are marked lost and re-published.
        if step_runs_recover_lost not in hooks.on_workers_offline:
            hooks.on_workers_offline.append(step_runs_recover_lost)
