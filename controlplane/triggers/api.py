"""Triggers API: webhook management for editors (`webhooks`), the webhook receiver (`hooks/{token}`,
no user: the signature authenticates) and a read of schedules with their recent fires.

Another tenant's hook, schedule or deployment is a 404, like a missing one.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.errors import NotFound
from controlplane.core.pagination import paginated
from controlplane.core.schema import ErrorSerializer
from controlplane.core.viewsets import validated
from controlplane.deployments.selectors import deployment_get
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.triggers import selectors, serializers as s, services
from controlplane.triggers.models import Schedule
from controlplane.triggers.throttle import HookThrottle


def _hook(request, hook_id):
    hook = selectors.hooks_visible(request.user).filter(pk=hook_id).first()
    if hook is None:
        raise NotFound(f"hook {hook_id} not found", path="hook_id")
    return hook


class HookListApi(APIView):
    @extend_schema(responses=s.HookOut(many=True))
    def get(self, request):
        return paginated(request, self, selectors.hooks_visible(request.user), s.HookOut)

    @extend_schema(request=s.HookCreateIn, responses={201: s.HookWithSecretOut})
    def post(self, request):
        data = validated(s.HookCreateIn, request.data)
        deployment = deployment_get(user=request.user, deployment_id=data["deployment"])
        hook, secret = services.hook_create(deployment=deployment, user=request.user, name=data["name"],
                                            branch=data["branch"])
        return Response({**s.HookOut(hook).data, "secret": secret}, status=status.HTTP_201_CREATED)


class HookDetailApi(APIView):
    @extend_schema(responses=s.HookOut)
    def get(self, request, hook_id):
        return Response(s.HookOut(_hook(request, hook_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, hook_id):
        services.hook_delete(hook=_hook(request, hook_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookRotateApi(APIView):
    @extend_schema(request=None, responses=s.HookWithSecretOut)
    def post(self, request, hook_id):
        hook, secret = services.hook_rotate(hook=_hook(request, hook_id), user=request.user)
        return Response({**s.HookOut(hook).data, "secret": secret})


class HookRetirePreviousApi(APIView):
    @extend_schema(request=None, responses=s.HookOut)
    def post(self, request, hook_id):
        hook = services.hook_retire_previous(hook=_hook(request, hook_id), user=request.user)
        return Response(s.HookOut(hook).data)


class HookReceiveApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [HookThrottle]

    @extend_schema(
        request={"application/json": {"type": "object", "additionalProperties": True}},
        parameters=[
            OpenApiParameter("X-Flowplane-Signature", str, OpenApiParameter.HEADER, required=False,
                             description="sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>"),
            OpenApiParameter("X-Flowplane-Timestamp", str, OpenApiParameter.HEADER, required=False,
                             description="Unix seconds; older than 5 minutes is refused."),
            OpenApiParameter("X-Flowplane-Delivery", str, OpenApiParameter.HEADER, required=False,
                             description="The delivery id: the same id twice starts one run."),
            OpenApiParameter("X-Hub-Signature-256", str, OpenApiParameter.HEADER, required=False,
                             description="GitHub: sha256=<hex HMAC-SHA256 of the body>."),
            OpenApiParameter("X-GitHub-Delivery", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("X-GitHub-Event", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            201: s.DeliveryOut, 200: s.DeliveryOut, 202: s.DeliveryOut,
            401: OpenApiResponse(ErrorSerializer, description="Bad or missing signature, or a stale timestamp."),
            429: OpenApiResponse(ErrorSerializer, description="Too many deliveries to this hook; see Retry-After."),
        },
    )
    def post(self, request, token):
        delivery = services.hook_receive(token=token, body=request.body, headers=request.headers)
        body = {"execution": delivery.execution.pk if delivery.execution else None, "created": delivery.created,
                "ignored": delivery.ignored}
        code = status.HTTP_201_CREATED if delivery.created else (
            status.HTTP_202_ACCEPTED if delivery.execution is None else status.HTTP_200_OK)
        return Response(s.DeliveryOut(body).data, status=code)


class ScheduleListApi(APIView):
    @extend_schema(parameters=[s.ScheduleFilterIn], responses=s.ScheduleOut(many=True))
    def get(self, request):
        data = validated(s.ScheduleFilterIn, request.query_params)
        schedules = Schedule.objects.select_related("periodic_task").order_by("deployment_id", "name")
        if "deployment" in data:
            deployment = deployment_get(user=request.user, deployment_id=data["deployment"])
            require_role(request.user, deployment.workflow.project.company_id, Role.VIEWER, what="deployment")
            schedules = schedules.filter(deployment=deployment)
        else:
            from controlplane.tenancy.access import member_company_ids

            schedules = schedules.filter(deployment__workflow__project__company_id__in=member_company_ids(request.user))
        return paginated(request, self, schedules, s.ScheduleOut)


class ScheduleFiresApi(APIView):
    @extend_schema(responses=s.ScheduleFireOut(many=True))
    def get(self, request, schedule_id):
        from controlplane.tenancy.access import member_company_ids

        schedule = Schedule.objects.filter(
            pk=schedule_id, deployment__workflow__project__company_id__in=member_company_ids(request.user)).first()
        if schedule is None:
            raise NotFound(f"schedule {schedule_id} not found", path="schedule_id")
        return paginated(request, self, schedule.fires.order_by("-scheduled_at"), s.ScheduleFireOut)
