"""Routes of the workflows app."""
from django.urls import path

from controlplane.workflows import api, operations_api

urlpatterns = [
    path("workflows", api.WorkflowListApi.as_view(), name="workflow-list"),
    path("workflows/<int:workflow_id>", api.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("workflows/<int:workflow_id>/validate", api.WorkflowValidateApi.as_view(), name="workflow-validate"),
    path("workflows/<int:workflow_id>/publish", api.WorkflowPublishApi.as_view(), name="workflow-publish"),
    path("workflows/<int:workflow_id>/status", api.WorkflowStatusApi.as_view(), name="workflow-status"),
    path("workflows/<int:workflow_id>/versions", api.WorkflowVersionListApi.as_view(), name="workflow-version-list"),
    path(
        "workflows/<int:workflow_id>/versions/<int:number>/diff",
        api.WorkflowVersionDiffApi.as_view(),
        name="workflow-version-diff",
    ),
    path("workflows/<int:workflow_id>/clone", operations_api.WorkflowCloneApi.as_view(), name="workflow-clone"),
    path("workflows/<int:workflow_id>/audit", operations_api.WorkflowAuditApi.as_view(), name="workflow-audit"),
    path("templates", operations_api.TemplateListApi.as_view(), name="template-list"),
    path("templates/<int:template_id>", operations_api.TemplateDetailApi.as_view(), name="template-detail"),
    path("templates/<int:template_id>/instantiate", operations_api.TemplateInstantiateApi.as_view(),
         name="template-instantiate"),
    path("versions/<int:version_id>", api.VersionDetailApi.as_view(), name="version-detail"),
    path("versions/<int:version_id>/diff", api.VersionDiffApi.as_view(), name="version-diff"),
]
