"""Fixtures of the operator-page tests: the executions tests' groups and deploy settings, reused.

Pages are read with Django's test client logged in as a member (`page_client(user)`), the way an
operator's browser session reads them.
"""
from __future__ import annotations

import pytest

from tests.controlplane.executions.conftest import _deploy_settings, groups  # noqa: F401  (fixtures, reused)


@pytest.fixture
def page_client(client):
    """`page_client(user)`: the test client with `user` logged in (a session, as after the admin login)."""

    def login(user):
        client.force_login(user)
        return client

    return login
