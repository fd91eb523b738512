"""Catalog API: blueprints (+ publish, versions), blueprint-versions, job-templates, secrets.

Viewers read; editors create and publish blueprints and templates; admins manage secrets.
Another company's object is a 404 on every route. Secret values are write-only.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from controlplane.catalog import selectors, serializers as s, services
from controlplane.core.schema import ErrorSerializer
from controlplane.core.viewsets import PagedViewSet, validated
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Company, Role


def _company(user, company_id: int, minimum: Role, what: str) -> Company:
    """The company if the caller has at least `minimum` there; 404 for non-members, 403 if too low."""
    require_role(user, company_id, minimum, what=what)
    return Company.objects.get(pk=company_id)


class _CatalogViewSet(PagedViewSet):
    def company_filter(self):
        return validated(s.CompanyFilterIn, self.request.query_params).get("company")


class BlueprintViewSet(_CatalogViewSet):
    serializer_class = s.BlueprintOut

    def get_queryset(self):  # for the schema generator; views call selectors
        return selectors.blueprint_list(user=self.request.user)

    @extend_schema(parameters=[s.CompanyFilterIn])
    def list(self, request):
        return self.paged(selectors.blueprint_list(user=request.user, company_id=self.company_filter()), s.BlueprintOut)

    @extend_schema(request=s.BlueprintCreateIn, responses={201: s.BlueprintOut})
    def create(self, request):
        data = validated(s.BlueprintCreateIn, request.data)
        company = _company(request.user, data["company"], Role.EDITOR, "company")
        blueprint = services.blueprint_create(
            company=company, name=data["name"], description=data["description"], user=request.user
        )
        blueprint = selectors.blueprint_get(user=request.user, blueprint_id=blueprint.pk)
        return Response(s.BlueprintOut(blueprint).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(s.BlueprintOut(selectors.blueprint_get(user=request.user, blueprint_id=pk)).data)

    @extend_schema(request=s.BlueprintUpdateIn, responses=s.BlueprintOut)
    def update(self, request, pk=None, partial=False):
        blueprint = selectors.blueprint_get(user=request.user, blueprint_id=pk)
        require_role(request.user, blueprint.company_id, Role.EDITOR, what="blueprint")
        data = validated(s.BlueprintUpdateIn, request.data)
        services.blueprint_update(blueprint=blueprint, name=data.get("name"), description=data.get("description"))
        return Response(s.BlueprintOut(selectors.blueprint_get(user=request.user, blueprint_id=pk)).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    def destroy(self, request, pk=None):
        blueprint = selectors.blueprint_get(user=request.user, blueprint_id=pk)
        require_role(request.user, blueprint.company_id, Role.EDITOR, what="blueprint")
        services.blueprint_delete(blueprint=blueprint)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.BlueprintPublishIn, responses={201: s.BlueprintVersionDetailOut, 200: s.BlueprintVersionDetailOut})
    @action(detail=True, methods=["post"], serializer_class=s.BlueprintPublishIn)
    def publish(self, request, pk=None):
        """Publish `{"document": {...}}` (or the document itself as the body): 201 new, 200 unchanged."""
        blueprint = selectors.blueprint_get(user=request.user, blueprint_id=pk)
        require_role(request.user, blueprint.company_id, Role.EDITOR, what="blueprint")
        body = request.data
        if isinstance(body, dict) and "document" not in body and "nodes" in body:
            body = {"document": body}
        data = validated(s.BlueprintPublishIn, body)
        version, created = services.blueprint_publish(blueprint=blueprint, document=data["document"], user=request.user)
        return Response(
            s.BlueprintVersionDetailOut(version).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(responses=s.BlueprintVersionOut(many=True))
    @action(detail=True, methods=["get"], serializer_class=s.BlueprintVersionOut)
    def versions(self, request, pk=None):
        blueprint = selectors.blueprint_get(user=request.user, blueprint_id=pk)
        return self.paged(selectors.blueprint_version_list(blueprint=blueprint), s.BlueprintVersionOut)


_IMMUTABLE = extend_schema(
    request=None,
    responses={405: OpenApiResponse(ErrorSerializer, description="Always: blueprint versions are immutable.")},
    summary="Refused: publish a new version instead (404 first for another company's version)",
)


class BlueprintVersionViewSet(_CatalogViewSet):
    """Read-only: a published version never changes. Writes are 405 (after the tenancy check)."""

    serializer_class = s.BlueprintVersionDetailOut

    def get_queryset(self):
        return selectors.blueprint_versions_visible(user=self.request.user)

    def retrieve(self, request, pk=None):
        return Response(s.BlueprintVersionDetailOut(selectors.blueprint_version_get(user=request.user, version_id=pk)).data)

    def _immutable(self, request, pk):
        selectors.blueprint_version_get(user=request.user, version_id=pk)
        raise MethodNotAllowed(request.method, detail="blueprint versions are immutable; publish a new version instead")

    @_IMMUTABLE
    def update(self, request, pk=None):
        self._immutable(request, pk)

    @_IMMUTABLE
    def partial_update(self, request, pk=None):
        self._immutable(request, pk)

    @_IMMUTABLE
    def destroy(self, request, pk=None):
        self._immutable(request, pk)


class JobTemplateViewSet(_CatalogViewSet):
    serializer_class = s.JobTemplateOut

    def get_queryset(self):
        return selectors.job_template_list(user=self.request.user)

    @extend_schema(parameters=[s.CompanyFilterIn])
    def list(self, request):
        return self.paged(selectors.job_template_list(user=request.user, company_id=self.company_filter()), s.JobTemplateOut)

    @extend_schema(request=s.JobTemplateIn, responses={201: s.JobTemplateOut})
    def create(self, request):
        data = validated(s.JobTemplateIn, request.data)
        company = _company(request.user, data.pop("company"), Role.EDITOR, "company")
        template = services.job_template_create(company=company, **data)
        return Response(s.JobTemplateOut(template).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(s.JobTemplateOut(selectors.job_template_get(user=request.user, template_id=pk)).data)

    @extend_schema(request=s.JobTemplateUpdateIn, responses=s.JobTemplateOut)
    def update(self, request, pk=None):
        template = selectors.job_template_get(user=request.user, template_id=pk)
        require_role(request.user, template.company_id, Role.EDITOR, what="job template")
        data = validated(s.JobTemplateUpdateIn, request.data)
        template = services.job_template_update(template=template, **data)
        return Response(s.JobTemplateOut(template).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk)

    def destroy(self, request, pk=None):
        template = selectors.job_template_get(user=request.user, template_id=pk)
        require_role(request.user, template.company_id, Role.EDITOR, what="job template")
        services.job_template_delete(template=template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SecretViewSet(_CatalogViewSet):
    """Names and dates only; `value` is accepted on create and rotate and never sent back."""

    serializer_class = s.SecretOut
    renderer_classes = [JSONRenderer]  # no browsable form that could echo a submitted value

    def get_queryset(self):
        return selectors.secret_list(user=self.request.user)

    @extend_schema(parameters=[s.CompanyFilterIn])
    def list(self, request):
        return self.paged(selectors.secret_list(user=request.user, company_id=self.company_filter()), s.SecretOut)

    @extend_schema(request=s.SecretCreateIn, responses={201: s.SecretOut})
    def create(self, request):
        data = validated(s.SecretCreateIn, request.data)
        company = _company(request.user, data["company"], Role.ADMIN, "company")
        secret = services.secret_create(company=company, name=data["name"], value=data["value"], user=request.user)
        return Response(s.SecretOut(secret).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(s.SecretOut(selectors.secret_get(user=request.user, secret_id=pk)).data)

    @extend_schema(request=s.SecretRotateIn, responses=s.SecretOut)
    def update(self, request, pk=None):
        """Rotate: `{"value": "..."}` replaces the value and stamps `rotated_at`."""
        secret = selectors.secret_get(user=request.user, secret_id=pk)
        require_role(request.user, secret.company_id, Role.ADMIN, what="secret")
        data = validated(s.SecretRotateIn, request.data)
        secret, _created = services.secret_set(
            company=secret.company, name=secret.name, value=data["value"], user=request.user
        )
        return Response(s.SecretOut(secret).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk)

    def destroy(self, request, pk=None):
        secret = selectors.secret_get(user=request.user, secret_id=pk)
        require_role(request.user, secret.company_id, Role.ADMIN, what="secret")
        services.secret_delete(secret=secret)
        return Response(status=status.HTTP_204_NO_CONTENT)
