"""Blueprints: publishing is idempotent, versions are immutable, bad documents fail with paths."""
from __future__ import annotations

import copy

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models.deletion import ProtectedError

from controlplane.catalog import selectors
from controlplane.catalog.models import BlueprintVersion, BlueprintVersionImmutable
from controlplane.catalog.services import blueprint_create, blueprint_delete, blueprint_publish, blueprint_update
from controlplane.core.errors import ApplicationError, Conflict
from tests.controlplane.catalog.conftest import simple_blueprint

pytestmark = pytest.mark.django_db


class TestPublish:
    def test_first_publish_is_version_1_with_a_digest(self, blueprint, owner):
        version, created = blueprint_publish(blueprint=blueprint, document=simple_blueprint(), user=owner)

        assert created is True
        assert (version.number, version.ref, version.published_by) == (1, "fanout-ingest@1", owner)
        assert version.digest.startswith("sha256:") and len(version.digest) == 71

    def test_unchanged_document_returns_the_existing_version(self, version, owner):
        reordered = simple_blueprint()
        reordered["nodes"].reverse()  # same blueprint, other list and key order
        reordered = dict(reversed(list(reordered.items())))

        again, created = blueprint_publish(blueprint=version.blueprint, document=reordered, user=owner)

        assert created is False
        assert again.pk == version.pk
        assert BlueprintVersion.objects.filter(blueprint=version.blueprint).count() == 1

    def test_a_changed_document_becomes_the_next_version(self, version, owner):
        v2, created = blueprint_publish(blueprint=version.blueprint, document=simple_blueprint("bye"), user=owner)

        assert created is True
        assert v2.number == 2 and v2.digest != version.digest

    def test_republishing_an_older_document_is_a_new_version(self, version, owner):
        blueprint_publish(blueprint=version.blueprint, document=simple_blueprint("bye"), user=owner)

        v3, created = blueprint_publish(blueprint=version.blueprint, document=simple_blueprint(), user=owner)

        assert created is True and v3.number == 3 and v3.digest == version.digest

    def test_nested_blueprint_reference_resolves_within_the_company(self, version, company, owner):
        outer = blueprint_create(company=company, name="outer", user=owner)
        doc = {
            "nodes": [
                {"id": "start", "type": "noop"},
                {"id": "inner", "blueprint": "fanout-ingest@1", "params": {"message": "x"}},
            ],
            "edges": [{"from": "start", "to": "inner:in"}],
            "outputs": [{"name": "out", "from": "inner:out"}],
        }

        v, created = blueprint_publish(blueprint=outer, document=doc, user=owner)

        assert created and v.ref == "outer@1"
        assert selectors.blueprint_documents(company.pk) == {
            ("fanout-ingest", 1): version.document,
            ("outer", 1): doc,
        }


def _with(change):
    doc = simple_blueprint()
    change(doc)
    return doc


INVALID = [
    pytest.param("not a mapping", "", "invalid_document", id="not-a-mapping"),
    pytest.param(_with(lambda d: d.update(extra=1)), "extra", "invalid_field", id="unknown-top-level-key"),
    pytest.param(_with(lambda d: d["params"].update({"bad name": {}})), "params.bad name", "invalid_param", id="bad-param-name"),
    pytest.param(_with(lambda d: d["params"].update(n={"type": "integer", "default": "x"})), "params.n.default", "invalid_field", id="param-default-type"),
    pytest.param(_with(lambda d: d["nodes"][1]["config"].update(message="{{ .params.nope }}")), "nodes[1].config.message", "unknown_param", id="undeclared-param"),
    pytest.param(_with(lambda d: d["edges"].append({"from": "say", "to": "ghost"})), "edges[1].to", "dangling_edge", id="dangling-edge"),
    pytest.param(_with(lambda d: d["edges"].append({"from": "say", "to": "fetch"})), "edges[0]", "cycle", id="cycle"),
    pytest.param(_with(lambda d: d["nodes"].append({"id": "x", "type": "no-such-step"})), "nodes[2].type", "unknown_step_type", id="unknown-step-type"),
    pytest.param(_with(lambda d: d["inputs"][0].update(to=["ghost"])), "inputs[0].to[0]", "dangling_port", id="input-to-unknown-node"),
    pytest.param(_with(lambda d: d["outputs"][0].update({"from": "nowhere"})), "outputs[0].from", "dangling_port", id="output-from-unknown-node"),
    pytest.param(_with(lambda d: d["outputs"][0].update({"from": "say:out"})), "outputs[0].from", "unknown_port", id="port-on-a-step"),
    pytest.param(_with(lambda d: d["inputs"].append({"name": "in", "to": "say"})), "inputs[1].name", "duplicate_port", id="duplicate-port"),
    pytest.param(_with(lambda d: d.update(inputs={"in": "fetch"})), "inputs", "invalid_field", id="inputs-not-a-list"),
    pytest.param(_with(lambda d: d["nodes"].append({"id": "me", "blueprint": "fanout-ingest@1"})), "nodes[2].blueprint", "recursive_blueprint", id="includes-itself"),
    pytest.param(_with(lambda d: d["nodes"].append({"id": "sub", "blueprint": "missing@1"})), "nodes[2].blueprint", "unknown_blueprint", id="unknown-nested-blueprint"),
    pytest.param(_with(lambda d: d["nodes"].append({"id": "t", "template": "missing"})), "nodes[2].template", "unknown_template", id="unknown-template"),
]


@pytest.mark.parametrize("document, path, code", INVALID)
def test_invalid_document_reports_path_and_code(blueprint, owner, document, path, code):
    with pytest.raises(ApplicationError) as caught:
        blueprint_publish(blueprint=blueprint, document=copy.deepcopy(document), user=owner)

    assert caught.value.code == "invalid_blueprint"
    assert (path, code) in [(e["path"], e["code"]) for e in caught.value.errors]
    assert not BlueprintVersion.objects.exists()


class TestImmutability:
    def test_save_of_an_existing_version_is_refused(self, version):
        version.document = {"nodes": []}
        with pytest.raises(BlueprintVersionImmutable):
            version.save()

    def test_delete_is_refused(self, version):
        with pytest.raises(BlueprintVersionImmutable):
            version.delete()

    @pytest.mark.parametrize("operation", ["update", "delete"])
    def test_bulk_writes_are_refused(self, version, operation):
        queryset = BlueprintVersion.objects.filter(pk=version.pk)
        with pytest.raises(BlueprintVersionImmutable):
            queryset.update(digest="x") if operation == "update" else queryset.delete()

    def test_raw_sql_update_is_refused_by_the_database(self, version):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE catalog_blueprintversion SET digest = 'x' WHERE id = %s", [version.pk])
        version.refresh_from_db()
        assert version.digest.startswith("sha256:")

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps only the UPDATE trigger")
    def test_raw_sql_delete_is_refused_by_postgres(self, version):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM catalog_blueprintversion WHERE id = %s", [version.pk])

    def test_a_blueprint_with_versions_cannot_be_deleted(self, version):
        with pytest.raises(Conflict) as caught:
            blueprint_delete(blueprint=version.blueprint)
        assert caught.value.code == "blueprint_published"
        with pytest.raises(ProtectedError):
            version.blueprint.delete()

    def test_a_published_blueprint_keeps_its_name(self, version):
        with pytest.raises(Conflict):
            blueprint_update(blueprint=version.blueprint, name="renamed")
        updated = blueprint_update(blueprint=version.blueprint, description="new words")
        assert updated.description == "new words"

    def test_an_unpublished_blueprint_can_be_deleted(self, blueprint):
        blueprint_delete(blueprint=blueprint)
        assert not type(blueprint).objects.filter(pk=blueprint.pk).exists()


class TestCreate:
    def test_names_are_unique_per_company(self, blueprint, company, owner, outsider):
        with pytest.raises(Conflict) as caught:
            blueprint_create(company=company, name=blueprint.name, user=owner)
        assert caught.value.code == "name_taken"
        other = outsider.memberships.get().company
        assert blueprint_create(company=other, name=blueprint.name, user=outsider).pk

    @pytest.mark.parametrize("name", ["Upper", "has space", "-leading", "a@1", ""])
    def test_names_must_be_references(self, company, owner, name):
        with pytest.raises(ApplicationError) as caught:
            blueprint_create(company=company, name=name, user=owner)
        assert caught.value.path == "name"
