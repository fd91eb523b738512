from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "controlplane.executions"
    label = "executions"
    verbose_name = "Executions"

    def ready(self) -> None:
        from controlplane.executions.services import lost_work_recover, worker_replaced_recover
        from controlplane.fleet import hooks

        # Attempts running on a worker that went offline are marked lost and re-published, and
        # the messages it held go back on their queues.
        if lost_work_recover not in hooks.on_workers_offline:
            hooks.on_workers_offline.append(lost_work_recover)
        # A new process under a known name: what the previous one had claimed is lost likewise.
        if worker_replaced_recover not in hooks.on_worker_replaced:
            hooks.on_worker_replaced.append(worker_replaced_recover)
