from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "controlplane.triggers"
    label = "triggers"
    verbose_name = "Triggers: schedules, webhooks and chained workflows"
