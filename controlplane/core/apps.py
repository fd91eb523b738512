from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "controlplane.core"
    label = "core"

    def ready(self) -> None:
        from django.conf import settings

        from pipelines import sandbox

        # Every process that evaluates tenants' jq (workers, the embedded runner, tests) applies
        # the JQ_* settings; the sandbox process itself starts lazily, on the first evaluation.
        sandbox.configure(time_budget_s=settings.JQ_TIME_BUDGET_S, memory_mib=settings.JQ_MEMORY_MIB)
