"""Executions API: trigger (editors), list/detail/timeline/events (viewers), cancel (editors).

Another tenant's execution is a 404, like a missing one.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.executions import selectors, services
from controlplane.executions.serializers import (
    EventsQuerySerializer,
    ExecutionCreateSerializer,
    ExecutionDetailSerializer,
    ExecutionEventSerializer,
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
            created_after=data.get("created_after"),
            created_before=data.get("created_before"),
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(executions, request, view=self)
        return paginator.get_paginated_response(ExecutionOutSerializer(page, many=True).data)

    @extend_schema(request=ExecutionCreateSerializer, responses={201: ExecutionDetailSerializer,
                                                                 200: ExecutionDetailSerializer})
    def post(self, request):
        payload = ExecutionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        execution, created = services.execution_start(
            version=data["version"],
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
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        return Response(selectors.execution_timeline(execution=execution))


class ExecutionEventsApi(APIView):
    @extend_schema(parameters=[EventsQuerySerializer], responses=ExecutionEventSerializer(many=True))
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
