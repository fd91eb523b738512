"""Fixtures of the control-plane tests; the repo-wide ones (owner, company, project, outsider) are in
tests/conftest.py. An app's own conftest may override `workflow` with one it needs."""
import pytest

from tests.factories import make_workflow


@pytest.fixture
def workflow(project, owner):
    """A workflow of `project` whose draft is a valid graph (revision 1, nothing published)."""
    return make_workflow(project, "ingest", user=owner)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
