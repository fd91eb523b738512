"""Shared fixtures. Factories live in tests/factories.py."""
from __future__ import annotations

import pytest

from tests.factories import api_client_for, make_company, make_project, make_user


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def company(owner):
    return make_company("acme", owner=owner)


@pytest.fixture
def project(company):
    return make_project(company, "data")


@pytest.fixture
def client_for():
    """Build an authenticated API client for a user: `client_for(user).get(...)`."""
    return api_client_for


@pytest.fixture
def outsider(db):
    """A user of another company: every object of `company` must be a 404 for them."""
    user = make_user("outsider")
    make_company("globex", owner=user)
    return user
