"""Fleet API: worker groups (viewers read, admins create and delete) and the workers serving them."""
from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.errors import ApplicationError
from controlplane.core.pagination import Pagination
from controlplane.fleet import selectors, services
from controlplane.fleet.serializers import (
    WorkerGroupInSerializer,
    WorkerGroupOutSerializer,
    WorkerOutSerializer,
)
from controlplane.tenancy.access import member_company_ids, require_role
from controlplane.tenancy.models import Company, Role


def _paginated(request, view, queryset, serializer_class, **context):
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


def _worker_context(user) -> dict:
    companies = dict(Company.objects.filter(id__in=member_company_ids(user)).values_list("id", "slug"))
    return {"company_slugs": set(companies.values()), "company_ids": set(companies), "now": timezone.now()}


class WorkerGroupListApi(APIView):
    @extend_schema(responses=WorkerGroupOutSerializer(many=True))
    def get(self, request):
        return _paginated(request, self, selectors.worker_group_list(user=request.user), WorkerGroupOutSerializer)

    @extend_schema(request=WorkerGroupInSerializer, responses={201: WorkerGroupOutSerializer})
    def post(self, request):
        payload = WorkerGroupInSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        require_role(request.user, data["company"], Role.ADMIN, what="company")
        group = services.worker_group_create(
            company=Company.objects.get(pk=data["company"]),
            slug=data["slug"],
            name=data["name"],
            description=data["description"],
        )
        group = selectors.worker_group_get(user=request.user, group_id=group.id)
        return Response(WorkerGroupOutSerializer(group).data, status=status.HTTP_201_CREATED)


class WorkerGroupDetailApi(APIView):
    @extend_schema(responses=WorkerGroupOutSerializer)
    def get(self, request, group_id: int):
        group = selectors.worker_group_get(user=request.user, group_id=group_id)
        return Response(WorkerGroupOutSerializer(group).data)

    @extend_schema(responses={204: None})
    def delete(self, request, group_id: int):
        group = selectors.worker_group_get(user=request.user, group_id=group_id)
        require_role(request.user, group.company_id, Role.ADMIN, what="worker group")
        services.worker_group_delete(group=group)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkerListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("group", int, description="Only workers serving this worker group (id).")],
        responses=WorkerOutSerializer(many=True),
    )
    def get(self, request):
        group_id = request.query_params.get("group")
        if group_id is not None:
            if not group_id.isdigit():
                raise ApplicationError(f"group must be a worker group id, got {group_id!r}", path="group")
            group_id = selectors.worker_group_get(user=request.user, group_id=int(group_id)).id
        workers = selectors.worker_list(user=request.user, group_id=group_id)
        return _paginated(request, self, workers, WorkerOutSerializer, **_worker_context(request.user))


class WorkerDetailApi(APIView):
    @extend_schema(responses=WorkerOutSerializer)
    def get(self, request, worker_id: int):
        worker = selectors.worker_get(user=request.user, worker_id=worker_id)
        return Response(WorkerOutSerializer(worker, context=_worker_context(request.user)).data)
