"""Routes of the fleet app."""
from django.urls import path

from controlplane.fleet import api

urlpatterns = [
    path("worker-groups", api.WorkerGroupListApi.as_view(), name="worker-group-list"),
    path("worker-groups/<int:group_id>", api.WorkerGroupDetailApi.as_view(), name="worker-group-detail"),
    path("workers", api.WorkerListApi.as_view(), name="worker-list"),
    path("workers/<int:worker_id>", api.WorkerDetailApi.as_view(), name="worker-detail"),
]
