"""Secrets: encrypted at rest, readable only through `secret_resolve`, never in a response."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from controlplane.catalog import crypto, selectors
from controlplane.catalog.models import Secret
from controlplane.catalog.services import secret_create, secret_delete, secret_resolve, secret_set
from controlplane.core.errors import ApplicationError, Conflict, NotFound
from tests.controlplane.catalog.conftest import SECRET_VALUE

API = "/api/v1"


class TestCrypto:
    def test_roundtrip_with_a_fresh_token_each_time(self):
        first, second = crypto.encrypt("value ü"), crypto.encrypt("value ü")
        assert first != second and "value" not in first
        assert crypto.decrypt(first) == crypto.decrypt(second) == "value ü"

    def test_another_key_cannot_decrypt(self):
        token = crypto.encrypt("value")
        with override_settings(SECRETS_ENCRYPTION_KEY="another key"), pytest.raises(crypto.SecretUndecryptable):
            crypto.decrypt(token)


@pytest.mark.django_db
class TestServices:
    def test_value_is_encrypted_at_rest(self, secret):
        with connection.cursor() as cursor:
            cursor.execute("SELECT ciphertext FROM catalog_secret WHERE id = %s", [secret.pk])
            (stored,) = cursor.fetchone()
        assert SECRET_VALUE not in stored
        assert crypto.decrypt(stored) == SECRET_VALUE

    def test_resolve_returns_the_value(self, secret, company):
        assert secret_resolve(company_id=company.pk, name="api.token") == SECRET_VALUE

    def test_resolve_of_a_missing_secret_or_other_company_is_not_found(self, secret, outsider):
        other = outsider.memberships.get().company
        for company_id, name in [(secret.company_id, "nope"), (other.pk, "api.token")]:
            with pytest.raises(NotFound) as caught:
                secret_resolve(company_id=company_id, name=name)
            assert caught.value.code == "secret_not_found"

    def test_set_rotates_an_existing_secret(self, secret, company, owner):
        rotated, created = secret_set(company=company, name="api.token", value="new value", user=owner)
        assert created is False and rotated.pk == secret.pk and rotated.rotated_at is not None
        assert secret_resolve(company_id=company.pk, name="api.token") == "new value"

    def test_create_refuses_an_existing_name(self, secret, company, owner):
        with pytest.raises(Conflict):
            secret_create(company=company, name="api.token", value="x", user=owner)

    @pytest.mark.parametrize("name", ["has space", "a/b", "", "x" * 201])
    def test_invalid_names(self, company, owner, name):
        with pytest.raises(ApplicationError) as caught:
            secret_set(company=company, name=name, value="v", user=owner)
        assert caught.value.path == "name"

    def test_empty_value_is_refused(self, company, owner):
        with pytest.raises(ApplicationError) as caught:
            secret_set(company=company, name="n", value="", user=owner)
        assert caught.value.path == "value"

    def test_str_and_repr_name_the_secret_only(self, secret):
        loaded = Secret.objects.get(pk=secret.pk)
        assert SECRET_VALUE not in str(loaded) + repr(loaded)
        assert loaded.ciphertext not in str(loaded) + repr(loaded)

    def test_secret_names_for_the_planner(self, secret, company):
        assert selectors.secret_names(company.pk) == frozenset({"api.token"})
        secret_delete(secret=secret)
        assert selectors.secret_names(company.pk) == frozenset()

    def test_no_log_record_carries_the_value(self, company, owner, caplog):
        caplog.set_level("DEBUG")
        secret, _ = secret_set(company=company, name="n", value=SECRET_VALUE, user=owner)
        secret_set(company=company, name="n", value=SECRET_VALUE + "2", user=owner)
        secret_resolve(company_id=company.pk, name="n")
        assert caplog.records  # the set/rotate events are logged ...
        text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert SECRET_VALUE not in text  # ... without the value


@pytest.mark.django_db
class TestApi:
    def test_value_never_appears_in_any_response(self, client_for, admin_member, company):
        client = client_for(admin_member)
        responses = []
        created = client.post(f"{API}/secrets", {"company": company.pk, "name": "db.password", "value": SECRET_VALUE}, format="json")
        responses.append(created)
        assert created.status_code == 201, created.content
        pk = created.json()["id"]
        responses.append(client.get(f"{API}/secrets"))
        responses.append(client.get(f"{API}/secrets/{pk}"))
        responses.append(client.put(f"{API}/secrets/{pk}", {"value": SECRET_VALUE + "-rotated"}, format="json"))
        responses.append(client.patch(f"{API}/secrets/{pk}", {"value": SECRET_VALUE + "-again"}, format="json"))
        responses.append(client.post(f"{API}/secrets", {"company": company.pk, "name": "db.password", "value": SECRET_VALUE}, format="json"))
        responses.append(client.post(f"{API}/secrets", {"company": company.pk, "name": "bad name", "value": SECRET_VALUE}, format="json"))
        responses.append(client.post(f"{API}/secrets", {"company": company.pk, "name": "big", "value": SECRET_VALUE * 5000}, format="json"))

        assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 409, 400, 400]
        ciphertext = Secret.objects.get(pk=pk).ciphertext
        for response in responses:
            assert SECRET_VALUE.encode() not in response.content
            assert ciphertext.encode() not in response.content
        assert set(responses[2].json()) == {"id", "company", "name", "created_by", "created_at", "updated_at", "rotated_at"}
        assert responses[3].json()["rotated_at"] is not None
        assert secret_resolve(company_id=company.pk, name="db.password") == SECRET_VALUE + "-again"

    def test_delete(self, client_for, admin_member, secret):
        assert client_for(admin_member).delete(f"{API}/secrets/{secret.pk}").status_code == 204
        assert not Secret.objects.exists()

    @pytest.mark.parametrize(
        "method, route, body",
        [
            ("post", "secrets", {"name": "n", "value": "v"}),
            ("put", "secrets/{secret}", {"value": "v"}),
            ("patch", "secrets/{secret}", {"value": "v"}),
            ("delete", "secrets/{secret}", {}),
        ],
    )
    def test_only_admins_manage_secrets(self, client_for, editor, admin_member, company, secret, method, route, body):
        url = f"{API}/" + route.format(secret=secret.pk)
        body = {"company": company.pk, **body}

        refused = getattr(client_for(editor), method)(url, body, format="json")
        allowed = getattr(client_for(admin_member), method)(url, body, format="json")

        assert refused.status_code == 403
        assert allowed.status_code in (200, 201, 204)

    def test_viewers_see_names_only(self, client_for, viewer, secret):
        body = client_for(viewer).get(f"{API}/secrets/{secret.pk}")
        assert body.status_code == 200 and body.json()["name"] == "api.token"
        assert SECRET_VALUE.encode() not in body.content
