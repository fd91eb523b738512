"""Routes of the egress app (mounted under /api/v1/)."""
from rest_framework.routers import SimpleRouter

from controlplane.egress import api

router = SimpleRouter(trailing_slash=False)
router.register("egress-rules", api.EgressRuleViewSet, basename="egress-rule")
router.register("egress-events", api.EgressAuditEventViewSet, basename="egress-event")

urlpatterns = router.urls
