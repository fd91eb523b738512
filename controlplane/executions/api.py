"""Executions API: trigger (editors), list/detail/timeline/events (viewers), cancel (editors);
dead letters: list (viewers), replay (editors).

A run starts on a deployment: `{deployment}` or `{workflow, environment}`. Another tenant's
execution, deployment or dead letter is a 404, like a missing one.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.pagination import Pagination
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.workflows.selectors import workflow_get

from controlplane.deployments.selectors import deployment_for_execution
from controlplane.executions import selectors, services
from controlplane.executions.serializers import (
    DeadLetterFilterSerializer,
    DeadLetterSerializer,
    EventsQuerySerializer,
    ExecutionCreateSerializer,
    ExecutionDetailSerializer,
    ExecutionEventSerializer,
    ExecutionEventsPageSerializer,
    ExecutionFilterSerializer,
    ExecutionOutSerializer,
)


class ExecutionListApi(APIView):
    @extend_schema(parameters=[ExecutionFilterSerializer], responses=ExecutionOutSerializer(many=True))
    def get(self, request):
        filters = ExecutionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        executions = selectors.execution_list(
            user=request.user,
            status=data.get("status"),
            workflow_id=data.get("workflow"),
            version_id=data.get("version"),
            deployment_id=data.get("deployment"),
            environment=data.get("environment"),
            created_after=data.get("created_after"),
            created_before=data.get("created_before"),
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(executions, request, view=self)
        return paginator.get_paginated_response(ExecutionOutSerializer(page, many=True).data)

    @extend_schema(request=ExecutionCreateSerializer, responses={201: ExecutionDetailSerializer,
                                                                 200: ExecutionDetailSerializer})
    def post(self, request):
        payload = ExecutionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        deployment = data.get("deployment")
        if deployment is None:
            workflow = workflow_get(user=request.user, workflow_id=data["workflow"])
            require_role(request.user, workflow.project.company_id, Role.EDITOR, what="workflow")
            deployment = deployment_for_execution(workflow, data["environment"])
        execution, created = services.execution_start(
            deployment=deployment,
            input=data.get("input", {}),
            idempotency_key=data.get("idempotency_key"),
            user=request.user,
        )
        return Response(
            ExecutionDetailSerializer(execution).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ExecutionDetailApi(APIView):
    @extend_schema(responses=ExecutionDetailSerializer)
    def get(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        return Response(ExecutionDetailSerializer(execution).data)


class ExecutionTimelineApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request, execution_id):
        execution = selectors.execution_get_for_timeline(user=request.user, execution_id=execution_id)
        return Response(selectors.execution_timeline(execution=execution))


class ExecutionEventsApi(APIView):
    @extend_schema(parameters=[EventsQuerySerializer], responses=ExecutionEventsPageSerializer)
    def get(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        events = list(selectors.execution_events(execution=execution, **query.validated_data))
        return Response({
            "results": ExecutionEventSerializer(events, many=True).data,
            "last_seq": events[-1].seq if events else query.validated_data["after"],
        })


class ExecutionCancelApi(APIView):
    @extend_schema(request=None, responses=ExecutionOutSerializer)
    def post(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        execution = services.execution_cancel(execution=execution, user=request.user)
        return Response(ExecutionOutSerializer(execution).data)


class ExecutionReplayApi(APIView):
    @extend_schema(request=None, responses={201: ExecutionDetailSerializer})
    def post(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        replay = services.execution_replay(execution=execution, user=request.user)
        return Response(ExecutionDetailSerializer(replay).data, status=status.HTTP_201_CREATED)


class DeadLetterListApi(APIView):
    @extend_schema(parameters=[DeadLetterFilterSerializer], responses=DeadLetterSerializer(many=True))
    def get(self, request):
        filters = DeadLetterFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        letters = selectors.dead_letter_list(
            user=request.user, execution_id=filters.validated_data.get("execution"),
            status=filters.validated_data.get("status"),
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(letters, request, view=self)
        return paginator.get_paginated_response(DeadLetterSerializer(page, many=True).data)


class DeadLetterReplayApi(APIView):
    @extend_schema(request=None, responses={201: ExecutionDetailSerializer})
    def post(self, request, dead_letter_id):
        letter = selectors.dead_letter_get(user=request.user, dead_letter_id=dead_letter_id)
        execution = services.dead_letter_replay(dead_letter=letter, user=request.user)
        return Response(ExecutionDetailSerializer(execution).data, status=status.HTTP_201_CREATED)
