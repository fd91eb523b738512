"""Routes of the operator pages (server-rendered, read-only, login required)."""
from django.urls import path

from controlplane.web import views

app_name = "web"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("executions/", views.execution_list, name="execution-list"),
    path("executions/<uuid:execution_id>/", views.execution_detail, name="execution-detail"),
    path("deployments/<int:deployment_id>/", views.deployment_detail, name="deployment-detail"),
    path("fleet/", views.fleet, name="fleet"),
]
