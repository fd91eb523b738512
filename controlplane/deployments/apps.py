from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "controlplane.deployments"
    label = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from controlplane.deployments.selectors import artifact_keys_of_companies
        from controlplane.fleet import hooks

        hooks.artifact_owner = artifact_keys_of_companies
