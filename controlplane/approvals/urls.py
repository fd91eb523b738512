"""Routes of the approvals app."""
from django.urls import path

from controlplane.approvals import api

urlpatterns = [
    path("approvals", api.ApprovalListApi.as_view(), name="approval-list"),
    path("approvals/<int:approval_id>", api.ApprovalDetailApi.as_view(), name="approval-detail"),
    path("approvals/<int:approval_id>/decide", api.ApprovalDecideApi.as_view(), name="approval-decide"),
]
