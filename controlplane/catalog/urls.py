"""Routes of the catalog app (mounted under /api/v1/)."""
from rest_framework.routers import SimpleRouter

from controlplane.catalog import api

router = SimpleRouter(trailing_slash=False)  # like the other apps: /api/v1/blueprints/7
router.register("blueprints", api.BlueprintViewSet, basename="blueprint")
router.register("blueprint-versions", api.BlueprintVersionViewSet, basename="blueprint-version")
router.register("job-templates", api.JobTemplateViewSet, basename="job-template")
router.register("secrets", api.SecretViewSet, basename="secret")

urlpatterns = router.urls
