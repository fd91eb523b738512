"""The egress allow-list API: tenant-scoped, admin/owner write, members read, every change audited."""
from __future__ import annotations

import pytest

from controlplane.egress.models import EgressAuditEvent, EgressRule

pytestmark = pytest.mark.django_db

API = "/api/v1"


def create(client, company, entry, **fields):
    return client.post(f"{API}/egress-rules", {"company": company.pk, "entry": entry, **fields}, format="json")


class TestWrites:
    @pytest.mark.parametrize("who", ["owner", "admin_member"])
    def test_owner_and_admin_create_update_delete(self, request, client_for, company, who):
        user = request.getfixturevalue(who)
        client = client_for(user)
        response = create(client, company, " Internal.Example:8443 ", description="ledger")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["entry"], body["description"], body["created_by"]) == (
            "internal.example:8443", "ledger", user.username)
        pk = body["id"]

        response = client.patch(f"{API}/egress-rules/{pk}", {"entry": "10.0.0.0/8"}, format="json")
        assert response.status_code == 200 and response.json()["entry"] == "10.0.0.0/8"
        assert client.delete(f"{API}/egress-rules/{pk}").status_code == 204
        assert not EgressRule.objects.filter(pk=pk).exists()

        events = client.get(f"{API}/egress-events", {"company": company.pk}).json()["results"]
        assert [e["action"] for e in events] == ["deleted", "updated", "created"]  # newest first
        deleted, updated, created = events
        assert {e["actor"] for e in events} == {user.username} and {e["via"] for e in events} == {"api"}
        assert {e["rule_id"] for e in events} == {pk}
        assert created["before"] is None and created["after"] == {"entry": "internal.example:8443",
                                                                  "description": "ledger"}
        assert updated["before"]["entry"] == "internal.example:8443" and updated["after"]["entry"] == "10.0.0.0/8"
        assert deleted["before"]["entry"] == "10.0.0.0/8" and deleted["after"] is None
        assert client.get(f"{API}/egress-events/{created['id']}").json()["action"] == "created"
        assert all(e["at"] for e in events)

    @pytest.mark.parametrize("who", ["viewer", "editor"])
    def test_viewer_and_editor_read_but_cannot_write(self, request, client_for, company, rule, who):
        client = client_for(request.getfixturevalue(who))
        assert client.get(f"{API}/egress-rules").json()["results"][0]["entry"] == "10.20.0.0/16"
        assert client.get(f"{API}/egress-rules/{rule.pk}").status_code == 200
        assert client.get(f"{API}/egress-events", {"rule": rule.pk}).json()["count"] == 1
        for response in (
            create(client, company, "10.9.0.0/16"),
            client.put(f"{API}/egress-rules/{rule.pk}", {"entry": "0.0.0.0/0"}, format="json"),
            client.patch(f"{API}/egress-rules/{rule.pk}", {"description": "x"}, format="json"),
            client.delete(f"{API}/egress-rules/{rule.pk}"),
        ):
            assert response.status_code == 403, response.json()
            assert response.json()["error"] == "insufficient_role"
        assert EgressRule.objects.get(pk=rule.pk).entry == "10.20.0.0/16"
        assert EgressAuditEvent.objects.count() == 1  # only the fixture's own creation

    def test_another_tenant_gets_404_everywhere(self, client_for, company, rule, outsider):
        client = client_for(outsider)
        assert client.get(f"{API}/egress-rules").json()["results"] == []
        assert client.get(f"{API}/egress-rules", {"company": company.pk}).json()["results"] == []
        assert client.get(f"{API}/egress-events", {"company": company.pk}).json()["results"] == []
        event = EgressAuditEvent.objects.get()
        for response in (
            client.get(f"{API}/egress-rules/{rule.pk}"),
            client.patch(f"{API}/egress-rules/{rule.pk}", {"entry": "0.0.0.0/0"}, format="json"),
            client.put(f"{API}/egress-rules/{rule.pk}", {"entry": "0.0.0.0/0"}, format="json"),
            client.delete(f"{API}/egress-rules/{rule.pk}"),
            client.get(f"{API}/egress-events/{event.pk}"),
            create(client, company, "0.0.0.0/0"),
        ):
            assert response.status_code == 404, response.json()
            assert response.json()["error"] == "not_found"
        assert EgressRule.objects.get(pk=rule.pk).entry == "10.20.0.0/16"

    def test_anonymous_is_refused(self, rule):
        from rest_framework.test import APIClient

        assert APIClient().get(f"{API}/egress-rules").status_code in (401, 403)


class TestValidation:
    @pytest.mark.parametrize("entry", ["10.0.0.0/33", "2130706433", "bad host", "x:0", "[::1"])
    def test_bad_entries_are_400_naming_the_field(self, client_for, owner, company, entry):
        response = create(client_for(owner), company, entry)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_egress_rule" and response.json()["path"] == "entry"
        assert not EgressRule.objects.exists() and not EgressAuditEvent.objects.exists()

    def test_the_same_rule_in_another_spelling_is_a_conflict(self, client_for, owner, company, rule):
        response = create(client_for(owner), company, "10.20.99.1/16")
        assert response.status_code == 409 and response.json()["error"] == "rule_exists"
        assert EgressAuditEvent.objects.count() == 1

    def test_missing_company_and_long_description(self, client_for, owner, company):
        client = client_for(owner)
        assert client.post(f"{API}/egress-rules", {"entry": "10.0.0.0/8"}, format="json").status_code == 400
        assert create(client, company, "10.0.0.0/8", description="x" * 501).status_code == 400

    def test_an_update_that_changes_nothing_is_not_audited(self, client_for, owner, rule):
        response = client_for(owner).patch(f"{API}/egress-rules/{rule.pk}", {"entry": "10.20.0.0/16"}, format="json")
        assert response.status_code == 200
        assert EgressAuditEvent.objects.count() == 1

    def test_audit_events_are_append_only(self, rule):
        from controlplane.egress.models import AuditAppendOnly

        event = EgressAuditEvent.objects.get()
        event.action = "deleted"
        with pytest.raises(AuditAppendOnly):
            event.save()
        with pytest.raises(AuditAppendOnly):
            event.delete()
        with pytest.raises(AuditAppendOnly):
            EgressAuditEvent.objects.all().update(action="deleted")
        with pytest.raises(AuditAppendOnly):
            EgressAuditEvent.objects.all().delete()
