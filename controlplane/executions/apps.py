from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "controlplane.executions"
    label = "executions"
    verbose_name = "Executions"

    def ready(self) -> None:
        from controlplane.fleet import hooks

        # Attempts running on a worker that went offline are marked lost and re-published, and
        # the messages it held go back on their queues; a new process under a known name: what
        # the previous one had claimed is lost likewise.
        hooks.workers_offline.connect(_recover_offline, dispatch_uid="executions.lost_work_recover")
        hooks.worker_replaced.connect(_recover_replaced, dispatch_uid="executions.worker_replaced_recover")
        _register_gates()


def _register_gates() -> None:
    from controlplane.executions.services.map_gate import map_gate
    from controlplane.executions.services.segments import register_gate

    # A map node's gate renders its items and publishes their lanes before the next segment.
    register_gate("map", map_gate)


def _recover_offline(sender, hostnames, **kwargs):
    from controlplane.executions.services import lost_work_recover

    return lost_work_recover(hostnames)


def _recover_replaced(sender, hostname, started_at, **kwargs):
    from controlplane.executions.services import worker_replaced_recover

    return worker_replaced_recover(hostname, started_at)
