"""Deployments API: plans, deployments (events, reconcile, rollback, pause, resume, undeploy,
accept-drift) and workloads. Viewers read; editors plan, apply, roll back, reconcile, pause and
resume; admins undeploy. Another company's object is a 404 everywhere."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.errors import NotFound
from controlplane.core.pagination import paginated
from controlplane.core.viewsets import validated
from controlplane.deployments import selectors, serializers as s, services
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.workflows.models import WorkflowVersion
from controlplane.workflows.selectors import workflow_get


def _version(workflow, number: int) -> WorkflowVersion:
    version = WorkflowVersion.objects.filter(workflow=workflow, number=number).first()
    if version is None:
        raise NotFound(f"workflow {workflow.slug!r} has no version {number}", path="version")
    return version


def _deployment(request, deployment_id, minimum: Role):
    deployment = selectors.deployment_get(user=request.user, deployment_id=deployment_id)
    require_role(request.user, deployment.workflow.project.company_id, minimum, what="deployment")
    return deployment


def _detail(request, deployment) -> Response:
    deployment = selectors.deployment_get(user=request.user, deployment_id=deployment.pk)
    return Response(s.DeploymentDetailOut(deployment).data)


class PlanListApi(APIView):
    @extend_schema(request=s.PlanCreateIn, responses={201: s.PlanOut})
    def post(self, request):
        data = validated(s.PlanCreateIn, request.data)
        workflow = workflow_get(user=request.user, workflow_id=data["workflow"])
        require_role(request.user, workflow.project.company_id, Role.EDITOR, what="workflow")
        plan = services.plan_create(
            workflow=workflow, version=_version(workflow, data["version"]), environment=data["environment"],
            placement=data["placement"], replicas=data["replicas"], user=request.user,
        )
        return Response(s.PlanOut(plan).data, status=status.HTTP_201_CREATED)


class PlanDetailApi(APIView):
    @extend_schema(responses=s.PlanOut)
    def get(self, request, plan_id):
        return Response(s.PlanOut(selectors.plan_get(user=request.user, plan_id=plan_id)).data)


class PlanApplyApi(APIView):
    @extend_schema(request=None, responses=s.DeploymentDetailOut)
    def post(self, request, plan_id):
        plan = selectors.plan_get(user=request.user, plan_id=plan_id)
        require_role(request.user, plan.workflow.project.company_id, Role.EDITOR, what="plan")
        deployment = services.plan_apply(plan=plan, user=request.user)
        return _detail(request, deployment)


class DeploymentListApi(APIView):
    @extend_schema(parameters=[s.DeploymentFilterIn], responses=s.DeploymentOut(many=True))
    def get(self, request):
        params = validated(s.DeploymentFilterIn, request.query_params)
        queryset = selectors.deployment_list(
            user=request.user, workflow_id=params.get("workflow"), environment=params.get("environment"),
            status=params.get("status"),
        )
        return paginated(request, self, queryset, s.DeploymentOut)


class DeploymentDetailApi(APIView):
    @extend_schema(responses=s.DeploymentDetailOut)
    def get(self, request, deployment_id):
        return Response(s.DeploymentDetailOut(selectors.deployment_get(user=request.user,
                                                                       deployment_id=deployment_id)).data)


class DeploymentEventsApi(APIView):
    @extend_schema(parameters=[s.EventFilterIn], responses=s.EventOut(many=True))
    def get(self, request, deployment_id):
        deployment = selectors.deployment_get(user=request.user, deployment_id=deployment_id)
        queryset = selectors.deployment_events(deployment=deployment)
        kind = validated(s.EventFilterIn, request.query_params).get("kind")
        if kind:
            queryset = queryset.filter(kind=kind)
        return paginated(request, self, queryset, s.EventOut)


class DeploymentReconcileApi(APIView):
    @extend_schema(request=s.ReconcileIn, responses=dict)
    def post(self, request, deployment_id):
        deployment = _deployment(request, deployment_id, Role.EDITOR)
        data = validated(s.ReconcileIn, request.data)
        return Response(services.deployment_reconcile(deployment=deployment, dry_run=data["dry_run"],
                                                      user=request.user))


class DeploymentRollbackApi(APIView):
    @extend_schema(request=s.RollbackIn, responses=dict)
    def post(self, request, deployment_id):
        deployment = _deployment(request, deployment_id, Role.EDITOR)
        data = validated(s.RollbackIn, request.data)
        deployment, plan = services.deployment_rollback(
            deployment=deployment, version=_version(deployment.workflow, data["version"]), user=request.user
        )
        body = s.DeploymentDetailOut(selectors.deployment_get(user=request.user, deployment_id=deployment.pk)).data
        return Response({**body, "plan": s.PlanOut(plan).data})


def _lifecycle(service, minimum: Role):
    class LifecycleApi(APIView):
        @extend_schema(request=None, responses=s.DeploymentDetailOut)
        def post(self, request, deployment_id):
            deployment = _deployment(request, deployment_id, minimum)
            return _detail(request, service(deployment=deployment, user=request.user))

    LifecycleApi.__name__ = f"Deployment{service.__name__.split('_')[-1].title()}Api"
    return LifecycleApi


DeploymentPauseApi = _lifecycle(services.deployment_pause, Role.EDITOR)
DeploymentResumeApi = _lifecycle(services.deployment_resume, Role.EDITOR)
DeploymentUndeployApi = _lifecycle(services.deployment_undeploy, Role.ADMIN)


class DeploymentAcceptDriftApi(APIView):
    @extend_schema(request=s.AcceptDriftIn, responses=dict)
    def post(self, request, deployment_id):
        deployment = _deployment(request, deployment_id, Role.EDITOR)
        data = validated(s.AcceptDriftIn, request.data)
        return Response(services.drift_accept(deployment=deployment, drift=data["drift"], user=request.user))


class WorkloadListApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request):
        return Response({"results": selectors.workload_list(user=request.user)})
