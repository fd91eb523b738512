"""Egress fixtures: members of `company` (acme) by role, and one rule."""
from __future__ import annotations

import pytest

from controlplane.tenancy.models import Role
from tests.factories import add_member, make_user


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
def rule(company, owner):
    from controlplane.egress.services import egress_rule_create

    return egress_rule_create(company=company, entry="10.20.0.0/16", description="billing", user=owner)
