"""Fleet API: tenancy (another company's objects are 404), roles, shapes and filters."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.fleet.models import WorkerGroup
from controlplane.fleet.services import worker_group_create
from controlplane.tenancy.models import Role
from .support import beat
from tests.factories import add_member, make_company

pytestmark = pytest.mark.django_db


@pytest.fixture
def globex_group(outsider):
    from controlplane.tenancy.models import Company

    return worker_group_create(company=Company.objects.get(slug="globex"), slug="ingest")


class TestWorkerGroups:
    def test_list_shows_own_groups_with_capacity(self, client_for, owner, ingest, globex_group):
        beat("a@h", concurrency=3)
        beat("old@h", concurrency=9, now=timezone.now() - timedelta(hours=1))

        response = client_for(owner).get("/api/v1/worker-groups")

        assert response.status_code == 200
        assert response.data["count"] == 1
        (group,) = response.data["results"]
        assert group == {
            "id": ingest.id, "company": ingest.company_id, "company_slug": "acme", "slug": "ingest", "name": "Ingest",
            "description": "", "queue": "wg.acme.ingest", "live_workers": 1, "concurrency": 3,
            "created_at": group["created_at"],
        }

    def test_admin_creates_group(self, client_for, company):
        admin = add_member(company, role=Role.ADMIN)
        response = client_for(admin).post(
            "/api/v1/worker-groups", {"company": company.id, "slug": "gpu", "name": "GPU"}, format="json"
        )
        assert response.status_code == 201, response.data
        assert response.data["queue"] == "wg.acme.gpu" and response.data["live_workers"] == 0
        assert WorkerGroup.objects.filter(company=company, slug="gpu").exists()

    @pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR], ids=lambda r: r.value)
    def test_below_admin_cannot_create(self, client_for, company, role):
        member = add_member(company, role=role)
        response = client_for(member).post("/api/v1/worker-groups", {"company": company.id, "slug": "gpu"}, format="json")
        assert response.status_code == 403 and response.data["error"] == "insufficient_role"

    def test_create_in_another_company_is_404(self, client_for, outsider, company):
        response = client_for(outsider).post("/api/v1/worker-groups", {"company": company.id, "slug": "x"}, format="json")
        assert response.status_code == 404

    @pytest.mark.parametrize(
        "body, path",
        [
            ({"slug": "x"}, "company"),
            ({"company": "ACME", "slug": "x"}, "company"),
            ({"company": "<id>"}, "slug"),
            ({"company": "<id>", "slug": "Bad Slug"}, "slug"),
        ],
        ids=["no-company", "company-not-an-id", "no-slug", "bad-slug"],
    )
    def test_invalid_body_is_400_with_path(self, client_for, owner, company, body, path):
        body = {key: company.id if value == "<id>" else value for key, value in body.items()}
        response = client_for(owner).post("/api/v1/worker-groups", body, format="json")
        assert response.status_code == 400, response.data
        assert response.data["path"] == path

    def test_duplicate_is_409(self, client_for, owner, company, ingest):
        response = client_for(owner).post("/api/v1/worker-groups", {"company": company.id, "slug": "ingest"}, format="json")
        assert response.status_code == 409 and response.data["error"] == "duplicate"

    def test_detail_and_delete_of_another_company_are_404(self, client_for, outsider, ingest):
        client = client_for(outsider)
        assert client.get(f"/api/v1/worker-groups/{ingest.id}").status_code == 404
        assert client.delete(f"/api/v1/worker-groups/{ingest.id}").status_code == 404
        assert WorkerGroup.objects.filter(pk=ingest.pk).exists()

    def test_viewer_reads_but_cannot_delete(self, client_for, company, ingest):
        viewer = add_member(company, role=Role.VIEWER)
        client = client_for(viewer)
        assert client.get(f"/api/v1/worker-groups/{ingest.id}").data["queue"] == "wg.acme.ingest"
        assert client.delete(f"/api/v1/worker-groups/{ingest.id}").status_code == 403

    def test_owner_deletes(self, client_for, owner, ingest):
        assert client_for(owner).delete(f"/api/v1/worker-groups/{ingest.id}").status_code == 204
        assert not WorkerGroup.objects.filter(pk=ingest.pk).exists()

    def test_anonymous_is_refused(self, ingest):
        from rest_framework.test import APIClient

        assert APIClient().get("/api/v1/worker-groups").status_code in (401, 403)


class TestWorkers:
    def test_list_shows_workers_serving_own_groups(self, client_for, owner, ingest, transform, globex_group):
        beat("a@h", queues=["wg.acme.ingest", "wg.globex.ingest"], step_types=["noop"], loaded_artifacts={"j": "d"})
        beat("t@h", queues=["wg.acme.transform"])
        beat("g@h", queues=["wg.globex.ingest"])
        beat("nobody@h", queues=["celery"])

        response = client_for(owner).get("/api/v1/workers")

        assert response.status_code == 200
        by_host = {w["hostname"]: w for w in response.data["results"]}
        assert sorted(by_host) == ["a@h", "t@h"]
        a = by_host["a@h"]
        # another tenant's group and queue on the same worker are not shown
        assert [g["queue"] for g in a["groups"]] == ["wg.acme.ingest"]
        assert a["queues"] == ["wg.acme.ingest"] and a["active_consumers"] == ["wg.acme.ingest"]
        assert a["status"] == "online" and a["live"] is True and 0 <= a["heartbeat_age_s"] < 5
        # "j" is no deployment's artifact key, so it belongs to no tenant and is not shown.
        assert a["loaded_artifacts"] == {} and a["step_types"] == ["noop"] and a["concurrency"] == 2

    def test_filter_by_group(self, client_for, owner, ingest, transform):
        beat("a@h", queues=["wg.acme.ingest"])
        beat("t@h", queues=["wg.acme.transform"])
        response = client_for(owner).get(f"/api/v1/workers?group={transform.id}")
        assert [w["hostname"] for w in response.data["results"]] == ["t@h"]

    def test_filter_by_another_companys_group_is_404(self, client_for, owner, globex_group):
        assert client_for(owner).get(f"/api/v1/workers?group={globex_group.id}").status_code == 404

    def test_filter_must_be_an_id(self, client_for, owner):
        response = client_for(owner).get("/api/v1/workers?group=ingest")
        assert response.status_code == 400 and response.data["path"] == "group"

    def test_stale_worker_is_not_live(self, client_for, owner, ingest):
        beat("old@h", now=timezone.now() - timedelta(hours=1))
        (worker,) = client_for(owner).get("/api/v1/workers").data["results"]
        assert worker["live"] is False and worker["heartbeat_age_s"] >= 3600

    def test_detail_scoped_to_tenant(self, client_for, owner, outsider, ingest):
        worker = beat("a@h")
        assert client_for(owner).get(f"/api/v1/workers/{worker.id}").data["hostname"] == "a@h"
        assert client_for(outsider).get(f"/api/v1/workers/{worker.id}").status_code == 404
        assert client_for(owner).get("/api/v1/workers/999999").status_code == 404


def test_openapi_schema_covers_fleet_routes():
    """The fleet's own routes generate a schema (the whole API's schema is other apps' business too)."""
    from django.urls import include, path
    from drf_spectacular.generators import SchemaGenerator

    generator = SchemaGenerator(patterns=[path("api/v1/", include("controlplane.fleet.urls"))])
    paths = generator.get_schema(request=None, public=True)["paths"]
    assert set(paths) == {
        "/api/v1/worker-groups", "/api/v1/worker-groups/{group_id}", "/api/v1/workers", "/api/v1/workers/{worker_id}",
    }
    assert set(paths["/api/v1/worker-groups"]) == {"get", "post"}
