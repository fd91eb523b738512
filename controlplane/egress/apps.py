from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class EgressConfig(AppConfig):
    name = "controlplane.egress"
    label = "egress"
    verbose_name = "Egress allow-lists"

    def ready(self) -> None:
        # A typo in the operator's allow-list must stop the process, not silently open nothing.
        from pipelines.egress import EgressRuleError, parse_rules

        try:
            parse_rules(settings.EGRESS_ALLOW)
        except EgressRuleError as exc:
            raise ImproperlyConfigured(f"EGRESS_ALLOW: {exc}") from None
