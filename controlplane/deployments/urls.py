"""Routes of the deployments app."""
from django.urls import path

from controlplane.deployments import api

urlpatterns = [
    path("plans", api.PlanListApi.as_view(), name="plan-list"),
    path("plans/<uuid:plan_id>", api.PlanDetailApi.as_view(), name="plan-detail"),
    path("plans/<uuid:plan_id>/apply", api.PlanApplyApi.as_view(), name="plan-apply"),
    path("deployments", api.DeploymentListApi.as_view(), name="deployment-list"),
    path("deployments/<int:deployment_id>", api.DeploymentDetailApi.as_view(), name="deployment-detail"),
    path("deployments/<int:deployment_id>/events", api.DeploymentEventsApi.as_view(), name="deployment-events"),
    path("deployments/<int:deployment_id>/reconcile", api.DeploymentReconcileApi.as_view(),
         name="deployment-reconcile"),
    path("deployments/<int:deployment_id>/rollback", api.DeploymentRollbackApi.as_view(), name="deployment-rollback"),
    path("deployments/<int:deployment_id>/pause", api.DeploymentPauseApi.as_view(), name="deployment-pause"),
    path("deployments/<int:deployment_id>/resume", api.DeploymentResumeApi.as_view(), name="deployment-resume"),
    path("deployments/<int:deployment_id>/undeploy", api.DeploymentUndeployApi.as_view(), name="deployment-undeploy"),
    path("deployments/<int:deployment_id>/accept-drift", api.DeploymentAcceptDriftApi.as_view(),
         name="deployment-accept-drift"),
    path("workloads", api.WorkloadListApi.as_view(), name="workload-list"),
]
