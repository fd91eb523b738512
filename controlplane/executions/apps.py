from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "controlplane.executions"
    label = "executions"
    verbose_name = "Executions"

    def ready(self) -> None:
        from django.conf import settings

        from controlplane.executions.services import lost_work_recover
        from controlplane.fleet import hooks
        from pipelines import sandbox

        # Steps' jq and templates run within these limits (the sandbox process starts lazily).
        sandbox.configure(time_budget_s=settings.JQ_TIME_BUDGET_S, memory_mib=settings.JQ_MEMORY_MIB)

        # Attempts running on a worker that went offline are marked lost and re-published, and
        # the messages it held go back on their queues.
        if lost_work_recover not in hooks.on_workers_offline:
            hooks.on_workers_offline.append(lost_work_recover)
