"""Catalog fixtures: members of `company` (acme) by role, and small valid documents."""
from __future__ import annotations

import pytest

from controlplane.tenancy.models import Role
from tests.factories import add_member, make_user

SECRET_VALUE = "hunter2-Sup3r$ecret-do-not-leak"


def simple_blueprint(message: str = "hi") -> dict:
    """fetch -> say, one input into fetch, one output from say, one param used in config."""
    return {
        "params": {"url": {"default": "https://example.test"}, "message": {}},
        "inputs": [{"name": "in", "to": ["fetch"]}],
        "outputs": [{"name": "out", "from": "say"}],
        "nodes": [
            {"id": "fetch", "type": "noop"},
            {"id": "say", "type": "log", "config": {"message": f"{message} {{{{ .params.message }}}}"}},
        ],
        "edges": [{"from": "fetch", "to": "say"}],
    }


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Every test makes a few users; the default hasher makes that the slowest part."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def viewer(company):
    return add_member(company, make_user("viewer"), Role.VIEWER)


@pytest.fixture
def editor(company):
    return add_member(company, make_user("editor"), Role.EDITOR)


@pytest.fixture
def admin_member(company):
    return add_member(company, make_user("admin"), Role.ADMIN)


@pytest.fixture
def blueprint(company, owner):
    from controlplane.catalog.services import blueprint_create

    return blueprint_create(company=company, name="fanout-ingest", description="fan out", user=owner)


@pytest.fixture
def version(blueprint, owner):
    from controlplane.catalog.services import blueprint_publish

    version, _created = blueprint_publish(blueprint=blueprint, document=simple_blueprint(), user=owner)
    return version


@pytest.fixture
def job_template(company):
    from controlplane.catalog.services import job_template_create

    return job_template_create(
        company=company,
        name="http-get",
        step_type="http",
        defaults={"method": "GET", "url": "{{ .params.url }}"},
        param_schema={"url": {"type": "string", "required": True}},
    )


@pytest.fixture
def secret(company, owner):
    from controlplane.catalog.services import secret_set

    secret, _created = secret_set(company=company, name="api.token", value=SECRET_VALUE, user=owner)
    return secret
