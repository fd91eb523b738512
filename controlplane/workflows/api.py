"""Workflows API: drafts with ETag / If-Match, validation, publishing, versions and their diff.

The draft's ETag is its revision (`ETag: "7"`). Writing the draft needs `If-Match` with the ETag
last read: missing is 428, stale is 412 with `current_revision` in the body. Versions are
read-only resources: PUT, PATCH and DELETE on them are 405.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.errors import ApplicationError, PreconditionRequired
from controlplane.core.schema import ErrorSerializer
from controlplane.tenancy import selectors as tenancy_selectors
from controlplane.tenancy.api import paginated, validated
from controlplane.workflows import selectors, services
from controlplane.workflows.documents import clean_graph_document
from controlplane.workflows.models import Workflow
from controlplane.workflows.operations import template_instantiate
from controlplane.workflows.serializers import (
    DiffQuerySerializer,
    DiffSerializer,
    NumberDiffQuerySerializer,
    DraftReplaceSerializer,
    DraftUpdateSerializer,
    PublishResultSerializer,
    StatusSerializer,
    ValidateRequestSerializer,
    ValidationSerializer,
    VersionDetailSerializer,
    VersionOutSerializer,
    VersionRefSerializer,
    WorkflowCreateSerializer,
    WorkflowDetailSerializer,
    WorkflowFilterSerializer,
    WorkflowOutSerializer,
    validation_data,
)

IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    location=OpenApiParameter.HEADER,
    required=True,
    description='The ETag of the draft you read, e.g. "3". Missing: 428; stale: 412.',
)


def etag(workflow: Workflow) -> str:
    return f'"{workflow.draft_revision}"'


def expected_revision(request, *, required: bool) -> int | None:
    """The revision named by If-Match; None when absent (and optional) or `*` (any revision)."""
    raw = request.headers.get("If-Match")
    if raw is None or not raw.strip():
        if required:
            raise PreconditionRequired(
                'writing the draft needs If-Match with the ETag you read (GET the workflow; e.g. If-Match: "3")',
                path="If-Match",
            )
        return None
    tag = raw.strip()
    if tag == "*":
        return None
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    if not tag.isdigit() or len(tag) > 18:
        raise ApplicationError(
            f'If-Match {raw.strip()[:40]!r} is not an ETag of this workflow; send one ETag as read, e.g. "3"',
            code="invalid_precondition",
            path="If-Match",
        )
    return int(tag)


def workflow_response(request, workflow_id: int, *, status_code: int = status.HTTP_200_OK) -> Response:
    workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
    response = Response(WorkflowDetailSerializer(workflow).data, status=status_code)
    response["ETag"] = etag(workflow)
    return response


class WorkflowListApi(APIView):
    @extend_schema(
        parameters=[WorkflowFilterSerializer], responses=WorkflowOutSerializer(many=True), summary="Your workflows"
    )
    def get(self, request):
        filters = validated(WorkflowFilterSerializer, request.query_params)
        workflows = selectors.workflow_list(
            user=request.user,
            project_id=filters.get("project"),
            company_id=filters.get("company"),
            status=filters.get("status"),
        )
        return paginated(request, self, workflows, WorkflowOutSerializer)

    @extend_schema(
        request=WorkflowCreateSerializer, responses={201: WorkflowDetailSerializer}, summary="Create (editors)"
    )
    def post(self, request):
        data = validated(WorkflowCreateSerializer, request.data)
        project = tenancy_selectors.project_get(user=request.user, project_id=data["project"])
        if data.get("template") is not None:
            template = selectors.template_get(user=request.user, template_id=data["template"], path="template")
            workflow = template_instantiate(user=request.user, template=template, name=data["name"], slug=data["slug"],
                                            project=project, description=data["description"] or None)
            return workflow_response(request, workflow.id, status_code=status.HTTP_201_CREATED)
        workflow = services.workflow_create(
            user=request.user,
            project=project,
            slug=data["slug"],
            name=data["name"],
            description=data["description"],
            graph=data.get("graph"),
        )
        return workflow_response(request, workflow.id, status_code=status.HTTP_201_CREATED)


class WorkflowDetailApi(APIView):
    @extend_schema(responses=WorkflowDetailSerializer, summary="The workflow with its draft graph and ETag")
    def get(self, request, workflow_id: int):
        return workflow_response(request, workflow_id)

    def _write(self, request, workflow_id: int, serializer_class) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        revision = expected_revision(request, required=True)
        data = validated(serializer_class, request.data)
        services.workflow_update_draft(
            user=request.user,
            workflow=workflow,
            expected_revision=revision,
            graph=data.get("graph", services.UNSET),
            name=data.get("name"),
            description=data.get("description"),
        )
        return workflow_response(request, workflow_id)

    @extend_schema(
        parameters=[IF_MATCH],
        request=DraftReplaceSerializer,
        responses=WorkflowDetailSerializer,
        summary="Replace the draft (editors; needs If-Match)",
    )
    def put(self, request, workflow_id: int):
        return self._write(request, workflow_id, DraftReplaceSerializer)

    @extend_schema(
        parameters=[IF_MATCH],
        request=DraftUpdateSerializer,
        responses=WorkflowDetailSerializer,
        summary="Change the draft, name or description (editors; needs If-Match)",
    )
    def patch(self, request, workflow_id: int):
        return self._write(request, workflow_id, DraftUpdateSerializer)

    @extend_schema(responses={204: None}, summary="Delete a never-published workflow (admins); archive otherwise")
    def delete(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        services.workflow_delete(user=request.user, workflow=workflow)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkflowValidateApi(APIView):
    @extend_schema(
        request=ValidateRequestSerializer,
        responses=ValidationSerializer,
        summary="Validate the draft, or a graph sent in the body, without saving anything",
    )
    def post(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        data = validated(ValidateRequestSerializer, request.data)
        graph = clean_graph_document(data["graph"]) if "graph" in data else workflow.draft_graph
        return Response(validation_data(selectors.graph_validation(graph)))


class WorkflowPublishApi(APIView):
    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "If-Match",
                str,
                location=OpenApiParameter.HEADER,
                description="Optional: publish only if the draft is still at this ETag (else 412).",
            )
        ],
        responses={
            201: OpenApiResponse(PublishResultSerializer, description="A new version was published."),
            200: OpenApiResponse(PublishResultSerializer, description="The draft was already published as this version."),
        },
        summary="Publish the draft as an immutable version (editors)",
    )
    def post(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        revision = expected_revision(request, required=False)
        version, created = services.workflow_publish(user=request.user, workflow=workflow, expected_revision=revision)
        version = selectors.version_get(user=request.user, version_id=version.id)
        response = Response(
            PublishResultSerializer(version, context={"created": created}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
        response["Location"] = f"/api/v1/versions/{version.id}"
        return response


class WorkflowStatusApi(APIView):
    @extend_schema(request=StatusSerializer, responses=WorkflowDetailSerializer, summary="Set the status (editors)")
    def post(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        data = validated(StatusSerializer, request.data)
        services.workflow_set_status(user=request.user, workflow=workflow, status=data["status"])
        return workflow_response(request, workflow_id)


class WorkflowVersionListApi(APIView):
    @extend_schema(responses=VersionOutSerializer(many=True), summary="Versions of a workflow, oldest first")
    def get(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return paginated(request, self, selectors.version_list(user=request.user, workflow=workflow), VersionOutSerializer)


class VersionDetailApi(APIView):
    """Read-only: versions are immutable, so PUT, PATCH and DELETE are 405."""

    @extend_schema(responses=VersionDetailSerializer, summary="A published version with its graph")
    def get(self, request, version_id: int):
        version = selectors.version_get(user=request.user, version_id=version_id)
        return Response(VersionDetailSerializer(version).data)


def diff_response(*, older, newer) -> Response:
    diff = selectors.version_diff(older=older, newer=newer)
    return Response(
        {
            "from": VersionRefSerializer(older).data,
            "to": VersionRefSerializer(newer).data,
            "diff": diff.to_dict(),
            "summary": diff.summary(),
            "empty": diff.is_empty,
        }
    )


class VersionDiffApi(APIView):
    @extend_schema(
        parameters=[DiffQuerySerializer],
        responses={
            200: DiffSerializer,
            400: OpenApiResponse(ErrorSerializer, description="`against` is a version of another workflow (path `against`)."),
            404: OpenApiResponse(ErrorSerializer, description="Either version is unknown or not yours (path `against` for it)."),
        },
        summary="What changed from version id ?against= to this version id (both of one workflow)",
    )
    def get(self, request, version_id: int):
        version = selectors.version_get(user=request.user, version_id=version_id)
        query = validated(DiffQuerySerializer, request.query_params)
        against = selectors.version_get(user=request.user, version_id=query["against"], path="against")
        if against.workflow_id != version.workflow_id:
            raise ApplicationError(
                f"version id {against.id} is version {against.number} of workflow {against.workflow.slug!r}, not of "
                f"{version.workflow.slug!r}; pass the id of a version of the same workflow, or use "
                f"/api/v1/workflows/{version.workflow_id}/versions/{version.number}/diff?against=<number>",
                code="other_workflow",
                path="against",
            )
        return diff_response(older=against, newer=version)


class WorkflowVersionDiffApi(APIView):
    @extend_schema(
        parameters=[NumberDiffQuerySerializer],
        responses={
            200: DiffSerializer,
            404: OpenApiResponse(ErrorSerializer, description="The workflow, or either version number, is unknown (path `against`)."),
        },
        summary="What changed from version number ?against= to version number {number} of this workflow",
    )
    def get(self, request, workflow_id: int, number: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        query = validated(NumberDiffQuerySerializer, request.query_params)
        version = selectors.version_by_number(user=request.user, workflow=workflow, number=number, path="number")
        against = selectors.version_by_number(user=request.user, workflow=workflow, number=query["against"], path="against")
        return diff_response(older=against, newer=version)
