from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "controlplane.approvals"
    label = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        from controlplane.approvals.services import approval_gate
        from controlplane.executions.services.segments import register_gate

        # The segment service asks this when a run reaches an approval node.
        register_gate("approval", approval_gate)
