"""Admin: rule changes go through the services and are audited with via=admin; events are view-only."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from controlplane.egress.models import EgressAuditEvent, EgressRule
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def root():
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def staff(root):
    client = Client()
    client.force_login(root)
    return client


def url(model, action, *args):
    return reverse(f"admin:egress_{model._meta.model_name}_{action}", args=args)


def test_add_change_delete_are_audited(staff, root, company):
    response = staff.post(url(EgressRule, "add"), {"company": company.pk, "entry": "LOCALHOST:8080",
                                                   "description": "dev"})
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = EgressRule.objects.get()
    assert rule.entry == "localhost:8080"

    response = staff.post(url(EgressRule, "change", rule.pk), {"company": company.pk, "entry": "10.0.0.0/8",
                                                               "description": "dev"})
    assert response.status_code == 302
    assert staff.post(url(EgressRule, "delete", rule.pk), {"post": "yes"}).status_code == 302
    assert not EgressRule.objects.exists()

    events = list(EgressAuditEvent.objects.order_by("id"))
    assert [(e.action, e.via, e.actor_id, e.actor_username) for e in events] == [
        ("created", "admin", root.pk, "root"), ("updated", "admin", root.pk, "root"),
        ("deleted", "admin", root.pk, "root"),
    ]
    assert events[1].before["entry"] == "localhost:8080" and events[1].after["entry"] == "10.0.0.0/8"


def test_a_bad_entry_is_a_form_error(staff, company):
    response = staff.post(url(EgressRule, "add"), {"company": company.pk, "entry": "0x7f.1", "description": ""})
    assert response.status_code == 200
    assert "looks numeric" in response.content.decode()
    assert not EgressRule.objects.exists() and not EgressAuditEvent.objects.exists()


def test_a_duplicate_is_a_form_error(staff, company, rule):
    response = staff.post(url(EgressRule, "add"), {"company": company.pk, "entry": "10.20.1.1/16", "description": ""})
    assert response.status_code == 200
    assert EgressRule.objects.count() == 1 and EgressAuditEvent.objects.count() == 1


def test_bulk_delete_is_audited(staff, company, rule):
    response = staff.post(url(EgressRule, "changelist"), {"action": "delete_selected", "_selected_action": [rule.pk],
                                                          "post": "yes"})
    assert response.status_code == 302
    assert not EgressRule.objects.exists()
    assert EgressAuditEvent.objects.filter(action="deleted", via="admin", rule_id=rule.pk).exists()


def test_audit_events_are_view_only(staff, rule):
    event = EgressAuditEvent.objects.get()
    assert staff.get(url(EgressAuditEvent, "change", event.pk)).status_code == 200
    assert staff.post(url(EgressAuditEvent, "change", event.pk), {"action": "deleted"}).status_code == 403
    assert staff.post(url(EgressAuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    assert staff.get(url(EgressAuditEvent, "add")).status_code == 403
