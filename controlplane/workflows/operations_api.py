"""Workflow operations API: clone, templates (save, list, get, delete, instantiate) and the audit trail.

Pause, resume and archive are `POST /api/v1/workflows/{id}/status {status}` (`api.WorkflowStatusApi`).
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.schema import ErrorSerializer
from controlplane.tenancy import selectors as tenancy_selectors
from controlplane.tenancy.api import paginated, validated
from controlplane.workflows import operations, selectors
from controlplane.workflows.api import workflow_response
from controlplane.workflows.serializers import (
    AuditEventSerializer,
    CloneSerializer,
    TemplateCreateSerializer,
    TemplateDetailSerializer,
    TemplateFilterSerializer,
    TemplateInstantiateSerializer,
    TemplateOutSerializer,
    WorkflowDetailSerializer,
)

NEW_WORKFLOW = {
    201: WorkflowDetailSerializer,
    403: OpenApiResponse(ErrorSerializer, description="Your role is below editor."),
    404: OpenApiResponse(ErrorSerializer, description="Unknown, or another company's."),
    409: OpenApiResponse(ErrorSerializer, description="The slug is taken in the project (`slug_taken`)."),
}


def _project(request, data):
    if data.get("project") is None:
        return None
    return tenancy_selectors.project_get(user=request.user, project_id=data["project"])


class WorkflowCloneApi(APIView):
    @extend_schema(request=CloneSerializer, responses=NEW_WORKFLOW,
                   summary="A new draft workflow from this one's latest (or given) version (editors)")
    def post(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        data = validated(CloneSerializer, request.data)
        clone = operations.workflow_clone(user=request.user, workflow=workflow, name=data["name"],
                                          slug=data.get("slug"), version=data.get("version"),
                                          project=_project(request, data))
        return workflow_response(request, clone.pk, status_code=status.HTTP_201_CREATED)


class WorkflowAuditApi(APIView):
    @extend_schema(responses=AuditEventSerializer(many=True), summary="Operations on the workflow, newest first")
    def get(self, request, workflow_id: int):
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
        return paginated(request, self, selectors.audit_list(workflow=workflow), AuditEventSerializer)


class TemplateListApi(APIView):
    @extend_schema(parameters=[TemplateFilterSerializer], responses=TemplateOutSerializer(many=True),
                   summary="Your companies' workflow templates")
    def get(self, request):
        filters = validated(TemplateFilterSerializer, request.query_params)
        templates = selectors.template_list(user=request.user, company_id=filters.get("company"))
        return paginated(request, self, templates, TemplateOutSerializer)

    @extend_schema(request=TemplateCreateSerializer, responses={
        201: TemplateDetailSerializer,
        403: OpenApiResponse(ErrorSerializer, description="Your role is below editor."),
        404: OpenApiResponse(ErrorSerializer, description="The workflow or version is unknown, or another company's."),
        409: OpenApiResponse(ErrorSerializer, description="`name_taken`, or `not_published` (no version yet)."),
    }, summary="Save a published version as a template (editors)")
    def post(self, request):
        data = validated(TemplateCreateSerializer, request.data)
        workflow = selectors.workflow_get(user=request.user, workflow_id=data["workflow"])
        template = operations.template_create(user=request.user, workflow=workflow, name=data["name"],
                                              description=data["description"], version=data.get("version"))
        template = selectors.template_get(user=request.user, template_id=template.pk)
        return Response(TemplateDetailSerializer(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailApi(APIView):
    @extend_schema(responses=TemplateDetailSerializer, summary="A template with its graph")
    def get(self, request, template_id: int):
        template = selectors.template_get(user=request.user, template_id=template_id)
        return Response(TemplateDetailSerializer(template).data)

    @extend_schema(responses={204: None}, summary="Delete a template (editors); workflows made from it stay")
    def delete(self, request, template_id: int):
        template = selectors.template_get(user=request.user, template_id=template_id)
        operations.template_delete(user=request.user, template=template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateInstantiateApi(APIView):
    @extend_schema(request=TemplateInstantiateSerializer, responses=NEW_WORKFLOW,
                   summary="A new draft workflow from the template (editors)")
    def post(self, request, template_id: int):
        template = selectors.template_get(user=request.user, template_id=template_id)
        data = validated(TemplateInstantiateSerializer, request.data)
        workflow = operations.template_instantiate(user=request.user, template=template, name=data["name"],
                                                   slug=data.get("slug"), project=_project(request, data))
        return workflow_response(request, workflow.pk, status_code=status.HTTP_201_CREATED)
