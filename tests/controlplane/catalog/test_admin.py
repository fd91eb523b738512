"""Admin: versions are view-only, writes go through the services, secret values never render."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from controlplane.catalog.models import Blueprint, BlueprintVersion, JobTemplate, Secret
from controlplane.catalog.services import secret_resolve
from tests.controlplane.catalog.conftest import SECRET_VALUE
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def url(model, action, *args):
    return reverse(f"admin:catalog_{model._meta.model_name}_{action}", args=args)


class TestBlueprintAdmin:
    def test_change_page_lists_versions_read_only(self, staff, version):
        page = staff.get(url(Blueprint, "change", version.blueprint_id))
        assert page.status_code == 200
        html = page.content.decode()
        assert version.digest in html
        assert "versions-0-number" not in html  # no editable inline inputs

    def test_version_admin_is_view_only(self, staff, version):
        assert staff.get(url(BlueprintVersion, "change", version.pk)).status_code == 200
        response = staff.post(url(BlueprintVersion, "change", version.pk), {"digest": "x"})
        assert response.status_code == 403
        assert staff.post(url(BlueprintVersion, "delete", version.pk), {"post": "yes"}).status_code == 403
        assert staff.get(url(BlueprintVersion, "add")).status_code == 403
        assert BlueprintVersion.objects.get(pk=version.pk).digest == version.digest

    def test_blueprint_with_versions_cannot_be_deleted(self, staff, version):
        assert staff.post(url(Blueprint, "delete", version.blueprint_id), {"post": "yes"}).status_code == 403
        assert Blueprint.objects.filter(pk=version.blueprint_id).exists()

    def test_add_goes_through_the_service(self, staff, company):
        response = staff.post(url(Blueprint, "add"), {"company": company.pk, "name": "etl", "description": "",
                                                       "versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 0})
        assert response.status_code == 302, response.content.decode()[:2000]
        assert Blueprint.objects.get(name="etl").company == company


class TestJobTemplateAdmin:
    def test_add_and_invalid_schema_is_a_form_error(self, staff, company):
        base = {"company": company.pk, "name": "t", "step_type": "http", "description": "", "defaults": "{}"}
        bad = staff.post(url(JobTemplate, "add"), {**base, "param_schema": '{"n": {"type": "float"}}'})
        assert bad.status_code == 200 and "param_schema.n.type" in bad.content.decode()
        good = staff.post(url(JobTemplate, "add"), {**base, "param_schema": '{"n": {"type": "string"}}'})
        assert good.status_code == 302
        assert JobTemplate.objects.get(name="t").param_schema == {"n": {"type": "string"}}


class TestSecretAdmin:
    def test_add_encrypts_through_the_service_and_never_renders_the_value(self, staff, company):
        response = staff.post(url(Secret, "add"), {"company": company.pk, "name": "db", "new_value": SECRET_VALUE}, follow=True)
        assert response.status_code == 200
        secret = Secret.objects.get(name="db")
        assert secret_resolve(company_id=company.pk, name="db") == SECRET_VALUE
        pages = [
            response,
            staff.get(url(Secret, "changelist")),
            staff.get(url(Secret, "change", secret.pk)),
            staff.get(url(Secret, "history", secret.pk)),
            staff.get(url(Secret, "delete", secret.pk)),
        ]
        for page in pages:
            assert page.status_code == 200
            assert SECRET_VALUE not in page.content.decode()
            assert secret.ciphertext not in page.content.decode()

    def test_add_without_a_value_is_a_form_error(self, staff, company):
        response = staff.post(url(Secret, "add"), {"company": company.pk, "name": "db", "new_value": ""})
        assert response.status_code == 200 and not Secret.objects.exists()

    def test_failed_add_does_not_echo_the_value(self, staff, company, secret):
        response = staff.post(url(Secret, "add"), {"company": company.pk, "name": secret.name, "new_value": "other-" + SECRET_VALUE})
        assert response.status_code == 200  # duplicate name: the form again, without the value
        assert SECRET_VALUE not in response.content.decode()

    def test_change_rotates_or_keeps(self, staff, secret, company):
        before = Secret.objects.get(pk=secret.pk).ciphertext
        assert staff.post(url(Secret, "change", secret.pk), {"new_value": ""}).status_code == 302
        assert Secret.objects.get(pk=secret.pk).ciphertext == before

        assert staff.post(url(Secret, "change", secret.pk), {"new_value": "rotated"}).status_code == 302
        assert secret_resolve(company_id=company.pk, name=secret.name) == "rotated"
        assert Secret.objects.get(pk=secret.pk).rotated_at is not None

    def test_delete(self, staff, secret):
        assert staff.post(url(Secret, "delete", secret.pk), {"post": "yes"}).status_code == 302
        assert not Secret.objects.exists()
