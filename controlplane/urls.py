"""URL map: admin, the versioned API (each app contributes its own routes), schema and pages."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("", include("controlplane.tenancy.urls")),
    path("", include("controlplane.workflows.urls")),
    path("", include("controlplane.fleet.urls")),
    path("", include("controlplane.executions.urls")),
    path("", include("controlplane.catalog.urls")),
    path("", include("controlplane.deployments.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("schema/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("controlplane.web.urls")),
]
