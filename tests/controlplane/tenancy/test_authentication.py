"""API token authentication: DRF's rules with its lookup in plain SQL, never cached.

Given a user with an API token, a call with the token is that user in one query; an unknown,
deleted or rotated key and an inactive user are refused on the very next call, with DRF's
messages; hostile headers are refused without a query.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication as DrfTokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from controlplane.tenancy.authentication import TokenAuthentication

pytestmark = pytest.mark.django_db


def call(key: str | None, header: str | None = None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    elif key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/companies")


def test_the_token_is_its_user_in_one_query_like_drfs(owner, company):
    token, _ = Token.objects.get_or_create(user=owner)

    with CaptureQueriesContext(connection) as queries:
        user, auth = TokenAuthentication().authenticate_credentials(token.key)

    assert len(queries.captured_queries) == 1
    drf_user, drf_token = DrfTokenAuthentication().authenticate_credentials(token.key)
    assert (user.pk, user.username, user.is_active, user.password) == (drf_user.pk, drf_user.username, True,
                                                                        drf_user.password)
    assert (auth.pk, auth.user_id, auth.created, auth.user is user) == (drf_token.pk, owner.pk, drf_token.created, True)
    assert user.is_authenticated and not user._state.adding
    response = call(token.key)
    assert response.status_code == 200 and [c["slug"] for c in response.json()["results"]] == ["acme"]


def test_a_deleted_or_rotated_token_is_refused_on_the_next_call(owner, company):
    token, _ = Token.objects.get_or_create(user=owner)
    key = token.key
    assert call(key).status_code == 200
    token.delete()  # (sets token.key, its primary key, to None)
    rotated = Token.objects.create(user=owner)

    refused = call(key)

    assert refused.status_code in (401, 403) and refused.json()["error"] == "authentication_failed", refused.json()
    assert "Invalid token." in refused.json()["detail"]
    assert call(rotated.key).status_code == 200


def test_an_inactive_user_is_refused_on_the_next_call(owner, company):
    token, _ = Token.objects.get_or_create(user=owner)
    assert call(token.key).status_code == 200
    owner.is_active = False
    owner.save()

    with pytest.raises(exceptions.AuthenticationFailed, match="User inactive or deleted."):
        TokenAuthentication().authenticate_credentials(token.key)
    assert call(token.key).json()["error"] == "authentication_failed"


@pytest.mark.parametrize("header", [
    "Token", "Token a b", "Token " + "x" * 5000, "Token ' OR '1'='1", "Token \u0000", "Bearer abc",
], ids=["no-key", "spaces", "huge", "sql-quote", "nul", "other-scheme"])
def test_hostile_headers_are_refused(owner, company, header):
    Token.objects.get_or_create(user=owner)

    response = call(None, header=header)

    assert response.status_code in (401, 403)
    assert response.json()["error"] in ("authentication_failed", "not_authenticated")
