from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "controlplane.deployments"
    label = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # Autodiscovery covers `workers.tasks` only: register this app's task shims here.
        from controlplane.deployments import tasks  # noqa: F401
        from controlplane.deployments.selectors import artifact_keys_of_companies
        from controlplane.fleet import hooks

        hooks.artifact_owner = artifact_keys_of_companies
