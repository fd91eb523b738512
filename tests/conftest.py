"""Shared fixtures. Factories live in tests/factories.py.

Factories are imported inside the fixtures so `tests/pipelines` runs with Django absent
(`pytest tests/pipelines -p no:django`): the pure domain needs no settings and no database.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def owner(db):
    from tests.factories import make_user

    return make_user("owner")


@pytest.fixture
def company(owner):
    from tests.factories import make_company

    return make_company("acme", owner=owner)


@pytest.fixture
def project(company):
    from tests.factories import make_project

    return make_project(company, "data")


@pytest.fixture
def client_for():
    """Build an authenticated API client for a user: `client_for(user).get(...)`."""
    from tests.factories import api_client_for

    return api_client_for


@pytest.fixture
def outsider(db):
    """A user of another company: every object of `company` must be a 404 for them."""
    from tests.factories import make_company, make_user

    user = make_user("outsider")
    make_company("globex", owner=user)
    return user
