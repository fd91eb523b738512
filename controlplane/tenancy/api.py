"""Tenancy API: companies (yours), their members, and projects.

Reads need any role in the company; admins manage projects and members; owners grant owner and
delete the company. Another company's objects are 404 everywhere.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.pagination import paginated  # noqa: F401  (re-exported: other apps import it here)
from controlplane.tenancy import selectors, services
from controlplane.tenancy.serializers import (
    CompanyCreateSerializer,
    CompanyOutSerializer,
    CompanyUpdateSerializer,
    MembershipAddSerializer,
    MembershipChangeSerializer,
    MembershipOutSerializer,
    ProjectCreateSerializer,
    ProjectFilterSerializer,
    ProjectOutSerializer,
    ProjectReplaceSerializer,
    ProjectUpdateSerializer,
)


def validated(serializer_class, data: Any, **kwargs) -> dict:
    """The validated input, or a 400 listing every problem with its path."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# Companies ---------------------------------------------------------------------------------------


class CompanyListApi(APIView):
    @extend_schema(responses=CompanyOutSerializer(many=True), summary="The companies you belong to")
    def get(self, request):
        return paginated(request, self, selectors.company_list(user=request.user), CompanyOutSerializer)

    @extend_schema(request=CompanyCreateSerializer, responses={201: CompanyOutSerializer}, summary="Create a company you own")
    def post(self, request):
        data = validated(CompanyCreateSerializer, request.data)
        company = services.company_create(user=request.user, slug=data["slug"], name=data["name"])
        company = selectors.company_get(user=request.user, company_id=company.id)
        return Response(CompanyOutSerializer(company).data, status=status.HTTP_201_CREATED)


class CompanyDetailApi(APIView):
    @extend_schema(responses=CompanyOutSerializer)
    def get(self, request, company_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        return Response(CompanyOutSerializer(company).data)

    @extend_schema(request=CompanyUpdateSerializer, responses=CompanyOutSerializer, summary="Rename (admins)")
    def patch(self, request, company_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        data = validated(CompanyUpdateSerializer, request.data)
        services.company_update(user=request.user, company=company, name=data["name"])
        company = selectors.company_get(user=request.user, company_id=company_id)
        return Response(CompanyOutSerializer(company).data)

    put = patch

    @extend_schema(responses={204: None}, summary="Delete the company (owners; refused once versions exist)")
    def delete(self, request, company_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        services.company_delete(user=request.user, company=company)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Members -----------------------------------------------------------------------------------------


class MemberListApi(APIView):
    @extend_schema(responses=MembershipOutSerializer(many=True), summary="Members of a company")
    def get(self, request, company_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        return paginated(
            request, self, selectors.membership_list(user=request.user, company=company), MembershipOutSerializer
        )

    @extend_schema(
        request=MembershipAddSerializer, responses={201: MembershipOutSerializer}, summary="Add a member (admins)"
    )
    def post(self, request, company_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        data = validated(MembershipAddSerializer, request.data)
        membership = services.membership_add(
            user=request.user, company=company, username=data["username"], role=data["role"]
        )
        return Response(MembershipOutSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(responses=MembershipOutSerializer)
    def get(self, request, company_id: int, user_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        membership = selectors.membership_get(user=request.user, company=company, member_id=user_id)
        return Response(MembershipOutSerializer(membership).data)

    @extend_schema(request=MembershipChangeSerializer, responses=MembershipOutSerializer, summary="Change a role (admins)")
    def patch(self, request, company_id: int, user_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        membership = selectors.membership_get(user=request.user, company=company, member_id=user_id)
        data = validated(MembershipChangeSerializer, request.data)
        membership = services.membership_change(user=request.user, membership=membership, role=data["role"])
        return Response(MembershipOutSerializer(membership).data)

    put = patch

    @extend_schema(responses={204: None}, summary="Remove a member (admins; owners only by owners)")
    def delete(self, request, company_id: int, user_id: int):
        company = selectors.company_get(user=request.user, company_id=company_id)
        membership = selectors.membership_get(user=request.user, company=company, member_id=user_id)
        services.membership_remove(user=request.user, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Projects ----------------------------------------------------------------------------------------


class ProjectListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("company", int, description="Only projects of this company.")],
        responses=ProjectOutSerializer(many=True),
        summary="Projects of your companies",
    )
    def get(self, request):
        filters = validated(ProjectFilterSerializer, request.query_params)
        projects = selectors.project_list(user=request.user, company_id=filters.get("company"))
        return paginated(request, self, projects, ProjectOutSerializer)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectOutSerializer}, summary="Create (admins)")
    def post(self, request):
        data = validated(ProjectCreateSerializer, request.data)
        company = selectors.company_get(user=request.user, company_id=data["company"])
        project = services.project_create(
            user=request.user, company=company, slug=data["slug"], name=data["name"], description=data["description"]
        )
        return Response(ProjectOutSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutSerializer)
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(ProjectOutSerializer(project).data)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectOutSerializer, summary="Update (admins)")
    def patch(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = validated(ProjectUpdateSerializer, request.data)
        project = services.project_update(user=request.user, project=project, **data)
        return Response(ProjectOutSerializer(project).data)

    @extend_schema(request=ProjectReplaceSerializer, responses=ProjectOutSerializer, summary="Replace (admins)")
    def put(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = validated(ProjectReplaceSerializer, request.data)
        project = services.project_update(user=request.user, project=project, **data)
        return Response(ProjectOutSerializer(project).data)

    @extend_schema(responses={204: None}, summary="Delete (admins; refused once versions exist)")
    def delete(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        services.project_delete(user=request.user, project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)
