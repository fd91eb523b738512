"""Approvals API: list and inspect (members), decide (the approval's approvers).

`GET approvals` (`?status=pending`, `?mine=1`: the pending ones the caller may decide),
`GET approvals/{id}`, `POST approvals/{id}/decide {decision: approve|reject, comment, input}`.
Another tenant's approval is a 404; a member who is not an approver 403; deciding twice 409.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.approvals import selectors, services
from controlplane.approvals.serializers import ApprovalDecideSerializer, ApprovalFilterSerializer, ApprovalSerializer
from controlplane.core.pagination import Pagination


class ApprovalListApi(APIView):
    @extend_schema(parameters=[ApprovalFilterSerializer], responses=ApprovalSerializer(many=True))
    def get(self, request):
        filters = ApprovalFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        approvals = selectors.approval_list(user=request.user, status=data.get("status"), mine=data["mine"],
                                            execution_id=data.get("execution"))
        paginator = Pagination()
        page = paginator.paginate_queryset(approvals, request, view=self)
        return paginator.get_paginated_response(ApprovalSerializer(page, many=True, context={"request": request}).data)


class ApprovalDetailApi(APIView):
    @extend_schema(responses=ApprovalSerializer)
    def get(self, request, approval_id):
        approval = selectors.approval_get(user=request.user, approval_id=approval_id)
        return Response(ApprovalSerializer(approval, context={"request": request}).data)


class ApprovalDecideApi(APIView):
    @extend_schema(request=ApprovalDecideSerializer, responses=ApprovalSerializer, operation_id="approvals_decide")
    def post(self, request, approval_id):
        """Approve (the input becomes the step's output; the run carries on) or reject (the step
        fails; the run compensates its completed steps)."""
        approval = selectors.approval_get(user=request.user, approval_id=approval_id)
        payload = ApprovalDecideSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.approval_decide(approval=approval, user=request.user, **payload.validated_data)
        approval = selectors.approval_get(user=request.user, approval_id=approval_id)
        return Response(ApprovalSerializer(approval, context={"request": request}).data)
