"""Executions API: trigger (editors), list/detail/timeline/events/diff (viewers), cancel and
replay (editors); dead letters: list and inspect (viewers), replay, discard and bulk replay (editors).

A run starts on a deployment: `{deployment}` or `{workflow, environment}`. Another tenant's
execution, deployment or dead letter is a 404, like a missing one.

Replay (`POST executions/{id}/replay`) always starts a NEW run linked to the original
(`services/replay.py`). A dead letter's replay (`POST dead-letters/{id}/replay`) continues the
letter's own run in place when it can (it failed with nothing compensated and its deployment
still runs its version): 202 with that run; otherwise it starts a from_step replay from the
failed node: 201 with the new run (`services/dead_letters.py`).
"""
from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.errors import ApplicationError
from controlplane.core.schema import ErrorSerializer

from controlplane.core.pagination import Pagination
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Role
from controlplane.workflows.selectors import workflow_get

from controlplane.deployments.selectors import deployment_for_execution
from controlplane.executions import selectors, services, streams
from controlplane.executions.diff import execution_diff
from controlplane.executions.serializers import (
    DeadLetterBulkReplayOutSerializer,
    DeadLetterBulkReplaySerializer,
    DeadLetterDetailSerializer,
    DeadLetterDiscardSerializer,
    DeadLetterFilterSerializer,
    DeadLetterReplaySerializer,
    DeadLetterSerializer,
    ExecutionCancelSerializer,
    ExecutionDiffQuerySerializer,
    ExecutionDiffSerializer,
    ExecutionReplaySerializer,
    ExecutionSummarySerializer,
    SseMessageSerializer,
    EventsQuerySerializer,
    ExecutionCreateSerializer,
    ExecutionDetailSerializer,
    ExecutionEventSerializer,
    ExecutionEventsPageSerializer,
    ExecutionFilterSerializer,
    ExecutionOutSerializer,
)


def _execution_filters(request) -> dict:
    filters = ExecutionFilterSerializer(data=request.query_params)
    filters.is_valid(raise_exception=True)
    data = filters.validated_data
    return {
        "status": data.get("status"), "workflow_id": data.get("workflow"), "version_id": data.get("version"),
        "deployment_id": data.get("deployment"), "environment": data.get("environment"),
        "created_after": data.get("created_after"), "created_before": data.get("created_before"),
        "trigger": data.get("trigger"),
    }


class ExecutionSummaryApi(APIView):
    @extend_schema(parameters=[ExecutionFilterSerializer], responses=ExecutionSummarySerializer)
    def get(self, request):
        counts = selectors.execution_status_counts(user=request.user, **_execution_filters(request))
        return Response({"total": sum(counts.values()), "by_status": counts})


class ExecutionListApi(APIView):
    @extend_schema(parameters=[ExecutionFilterSerializer], responses=ExecutionOutSerializer(many=True))
    def get(self, request):
        executions = selectors.execution_list(user=request.user, **_execution_filters(request))
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
    """The event store of a run: a JSON page (`after`, `limit`), or with `Accept: text/event-stream`
    a live SSE stream resumable with `Last-Event-ID` (see `streams.py`)."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, streams.EventStreamRenderer]

    @extend_schema(
        parameters=[EventsQuerySerializer, OpenApiParameter(
            "Last-Event-ID", OpenApiTypes.INT, OpenApiParameter.HEADER, required=False,
            description="SSE only: resume after this seq (the `id:` of the last message received).")],
        responses={(200, "application/json"): ExecutionEventsPageSerializer,
                   (200, "text/event-stream"): SseMessageSerializer,
                   204: OpenApiResponse(description="SSE: the run has ended and no event follows Last-Event-ID "
                                        "(EventSource stops)."),
                   503: OpenApiResponse(ErrorSerializer, description="SSE: this process serves its maximum of "
                                        "streams (`too_many_streams`); retry after Retry-After seconds.")},
    )
    def get(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if request.accepted_renderer.media_type == streams.EventStreamRenderer.media_type:
            return self._stream(request, execution, query.validated_data["after"])
        events = list(selectors.execution_events(execution=execution, **query.validated_data))
        return Response({
            "results": ExecutionEventSerializer(events, many=True).data,
            "last_seq": events[-1].seq if events else query.validated_data["after"],
        })

    def finalize_response(self, request, response, *args, **kwargs):
        """Errors (and the 503) are JSON whatever was asked for: only events are a stream."""
        response = super().finalize_response(request, response, *args, **kwargs)
        renderer = getattr(response, "accepted_renderer", None)
        if isinstance(response, Response) and response.status_code >= 400 and isinstance(
            renderer, streams.EventStreamRenderer
        ):
            response.accepted_renderer, response.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return response

    def _stream(self, request, execution, after: int):
        raw = request.headers.get("Last-Event-ID")
        if raw is not None:
            if not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw.strip()) > 12:
                raise ApplicationError("Last-Event-ID must be the seq of an event (a whole number)",
                                       path="Last-Event-ID")
            after = max(after, int(raw.strip()))
        if not streams.has_more(execution.pk, after):
            return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        if not streams.stream_slot():
            return Response({"error": "too_many_streams", "path": None,
                             "detail": "this server process streams its maximum of event streams; retry shortly, "
                             "or poll the JSON list with ?after="},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})
        response = StreamingHttpResponse(streams.event_stream(execution.pk, after=after),
                                         content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy must pass each message on as it comes
        return response


class ExecutionDiffApi(APIView):
    @extend_schema(parameters=[ExecutionDiffQuerySerializer], responses=ExecutionDiffSerializer)
    def get(self, request):
        query = ExecutionDiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        left = selectors.execution_get(user=request.user, execution_id=query.validated_data["left"])
        right = selectors.execution_get(user=request.user, execution_id=query.validated_data["right"])
        return Response(execution_diff(left=left, right=right))


class ExecutionCancelApi(APIView):
    @extend_schema(request=ExecutionCancelSerializer, responses={
        200: ExecutionOutSerializer,
        409: OpenApiResponse(ErrorSerializer, description="`not_cancellable`: the run already finished, failed, is "
                             "compensating or was cancelled.")})
    def post(self, request, execution_id):
        """Stop a pending, running or waiting run: no step of it starts after this returns.

        Every task of the run still queued, prefetched or waiting for a countdown is revoked; a
        running step whose node is `interruptible: true` is terminated (its attempt `cancelled`),
        any other running step finishes its attempt without moving the run on. Each step stopped
        gets a `step.cancelled` event (`state`: pending, retrying, interrupted or finishing).
        Without `compensate` the run is `cancelled` now; with it, `compensating` until the
        completed steps are undone (in a task, after the running ones finished), then `cancelled`
        (`saga.compensated` lists what was undone) or `compensation_failed`.
        """
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        payload = ExecutionCancelSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        execution = services.execution_cancel(execution=execution, user=request.user, compensate=data["compensate"],
                                              reason=data.get("reason") or None)
        return Response(ExecutionOutSerializer(execution).data)


class ExecutionReplayApi(APIView):
    @extend_schema(request=ExecutionReplaySerializer, responses={201: ExecutionDetailSerializer})
    def post(self, request, execution_id):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        payload = ExecutionReplaySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        replay = services.execution_replay(execution=execution, user=request.user, **payload.validated_data)
        return Response(ExecutionDetailSerializer(replay).data, status=status.HTTP_201_CREATED)


def _dead_letter_filters(data: dict) -> dict:
    return {"execution_id": data.get("execution"), "status": data.get("status"),
            "workflow_id": data.get("workflow"), "deployment_id": data.get("deployment"), "node_id": data.get("node"),
            "created_after": data.get("created_after"), "created_before": data.get("created_before")}


class DeadLetterListApi(APIView):
    @extend_schema(parameters=[DeadLetterFilterSerializer], responses=DeadLetterSerializer(many=True))
    def get(self, request):
        filters = DeadLetterFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        letters = selectors.dead_letter_list(user=request.user, **_dead_letter_filters(filters.validated_data))
        paginator = Pagination()
        page = paginator.paginate_queryset(letters, request, view=self)
        return paginator.get_paginated_response(DeadLetterSerializer(page, many=True).data)


class DeadLetterDetailApi(APIView):
    @extend_schema(responses=DeadLetterDetailSerializer)
    def get(self, request, dead_letter_id):
        letter = selectors.dead_letter_get(user=request.user, dead_letter_id=dead_letter_id)
        return Response(DeadLetterDetailSerializer(letter).data)


class DeadLetterReplayApi(APIView):
    @extend_schema(request=DeadLetterReplaySerializer, responses={
        201: ExecutionDetailSerializer, 202: ExecutionDetailSerializer})
    def post(self, request, dead_letter_id):
        """202: the letter's own run continues in place; 201: a new from_step run was started."""
        letter = selectors.dead_letter_get(user=request.user, dead_letter_id=dead_letter_id)
        payload = DeadLetterReplaySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = services.dead_letter_replay(dead_letter=letter, user=request.user, **payload.validated_data)
        return Response(ExecutionDetailSerializer(outcome.execution).data,
                        status=status.HTTP_202_ACCEPTED if outcome.continued else status.HTTP_201_CREATED)


class DeadLetterDiscardApi(APIView):
    @extend_schema(request=DeadLetterDiscardSerializer, responses=DeadLetterSerializer)
    def post(self, request, dead_letter_id):
        letter = selectors.dead_letter_get(user=request.user, dead_letter_id=dead_letter_id)
        payload = DeadLetterDiscardSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        letter = services.dead_letter_discard(dead_letter=letter, user=request.user, **payload.validated_data)
        return Response(DeadLetterSerializer(selectors.dead_letter_get(user=request.user,
                                                                       dead_letter_id=letter.pk)).data)


class DeadLetterBulkReplayApi(APIView):
    @extend_schema(request=DeadLetterBulkReplaySerializer, responses=DeadLetterBulkReplayOutSerializer,
                   operation_id="dead_letters_bulk_replay")
    def post(self, request):
        """Replay the open letters matching the filters (at most 100, oldest first), each on its own."""
        payload = DeadLetterBulkReplaySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        letters = selectors.dead_letter_list(user=request.user, **_dead_letter_filters(data))
        results = services.dead_letters_replay_bulk(letters=letters, user=request.user, version=data["version"])
        return Response({"results": results})
