"""URL map: admin, the versioned API (each app contributes its own routes), schema and pages."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

api_v1 = [
    path("", include("controlplane.tenancy.urls")),
    path("", include("controlplane.workflows.urls")),
    path("", include("controlplane.fleet.urls")),
    path("", include("controlplane.executions.urls")),
    path("", include("controlplane.approvals.urls")),
    path("", include("controlplane.catalog.urls")),
    path("", include("controlplane.deployments.urls")),
    path("", include("controlplane.egress.urls")),
    path("", include("controlplane.triggers.urls")),
    path("", include("controlplane.steptypes.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and Redoc load their scripts from drf-spectacular-sidecar's static files, and
    # nothing from the internet (core/redoc.html drops Redoc's web fonts).
    path("schema/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("schema/redoc/", SpectacularRedocView.as_view(url_name="api-schema", template_name="core/redoc.html"),
         name="api-redoc"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("controlplane.web.urls")),
]


def not_found(request, exception=None):
    """Unknown API routes (e.g. a non-numeric id) answer in the API's JSON error shape."""
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        return JsonResponse({"error": "not_found", "detail": f"no API route {request.path}", "path": None}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    import sys

    from controlplane.core.unavailable import DATABASE_UNAVAILABLE, unavailable_response

    # A database failure outside any view (a middleware saving the session, say) reaches here.
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return unavailable_response(request, exc)
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        return JsonResponse({"error": "server_error", "detail": "internal error; see the server log", "path": None}, status=500)
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)


handler404 = not_found
handler500 = server_error
