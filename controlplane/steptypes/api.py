"""Step types API: every signed-in user may read them; they are the same for every company."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.core.pagination import paginated
from controlplane.steptypes import selectors
from controlplane.steptypes.serializers import StepTypeOutSerializer


class StepTypeListApi(APIView):
    @extend_schema(responses=StepTypeOutSerializer(many=True))
    def get(self, request):
        return paginated(request, self, selectors.step_type_list(), StepTypeOutSerializer)


class StepTypeDetailApi(APIView):
    @extend_schema(
        responses=StepTypeOutSerializer,
        parameters=[OpenApiParameter("type", str, OpenApiParameter.PATH, description="Step type name, e.g. http.")],
    )
    def get(self, request, type: str):
        return Response(StepTypeOutSerializer(selectors.step_type_get(name=type)).data)
