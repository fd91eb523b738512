"""Egress allow-list API: `egress-rules` (CRUD) and `egress-events` (the audit trail, read-only).

Every member of a company reads its rules and their history; admins and owners change them,
because a rule opens the company's steps onto internal networks. Another company's rule or
event is a 404 on every route.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from controlplane.core.viewsets import PagedViewSet, validated
from controlplane.egress import selectors, serializers as s, services
from controlplane.tenancy.access import require_role
from controlplane.tenancy.models import Company, Role


class EgressRuleViewSet(PagedViewSet):
    """`?company=<id>` narrows the list to one company."""

    serializer_class = s.EgressRuleOut

    def get_queryset(self):  # for the schema generator; views call selectors
        return selectors.egress_rule_list(user=self.request.user)

    def list(self, request):
        rules = selectors.egress_rule_list(user=request.user, company_id=request.query_params.get("company"))
        return self.paged(rules, s.EgressRuleOut)

    @extend_schema(request=s.EgressRuleCreateIn, responses={201: s.EgressRuleOut})
    def create(self, request):
        data = validated(s.EgressRuleCreateIn, request.data)
        require_role(request.user, data["company"], Role.ADMIN, what="company")
        rule = services.egress_rule_create(
            company=Company.objects.get(pk=data["company"]), entry=data["entry"],
            description=data["description"], user=request.user,
        )
        return Response(s.EgressRuleOut(rule).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(s.EgressRuleOut(selectors.egress_rule_get(user=request.user, rule_id=pk)).data)

    @extend_schema(request=s.EgressRuleUpdateIn, responses=s.EgressRuleOut)
    def update(self, request, pk=None):
        rule = selectors.egress_rule_get(user=request.user, rule_id=pk)
        require_role(request.user, rule.company_id, Role.ADMIN, what="egress rule")
        data = validated(s.EgressRuleUpdateIn, request.data)
        rule = services.egress_rule_update(rule=rule, user=request.user, **data)
        return Response(s.EgressRuleOut(rule).data)

    @extend_schema(request=s.EgressRuleUpdateIn, responses=s.EgressRuleOut)
    def partial_update(self, request, pk=None):
        return self.update(request, pk)

    def destroy(self, request, pk=None):
        rule = selectors.egress_rule_get(user=request.user, rule_id=pk)
        require_role(request.user, rule.company_id, Role.ADMIN, what="egress rule")
        services.egress_rule_delete(rule=rule, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EgressAuditEventViewSet(PagedViewSet):
    """Newest first; `?company=<id>` and `?rule=<id>` narrow the list."""

    serializer_class = s.EgressAuditEventOut

    def get_queryset(self):
        return selectors.egress_event_list(user=self.request.user)

    def list(self, request):
        events = selectors.egress_event_list(user=request.user, company_id=request.query_params.get("company"),
                                             rule_id=request.query_params.get("rule"))
        return self.paged(events, s.EgressAuditEventOut)

    def retrieve(self, request, pk=None):
        return Response(s.EgressAuditEventOut(selectors.egress_event_get(user=request.user, event_id=pk)).data)
