"""API token authentication: DRF's `TokenAuthentication`, its one query written as plain SQL.

Every API call authenticates, and building DRF's `Token.objects.select_related("user").get(key=)`
through the ORM was a fifth of the web process's CPU under load (bench/api_load.py), several
times what PostgreSQL spends answering it. The rules are DRF's, unchanged and uncached: an unknown
key or an inactive user is refused on the very request after the change, with DRF's messages.
"""
from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


@cache
def _query() -> tuple[str, list[str], list[str]]:
    """(SQL, token field names, user field names): the token and its user in one row."""
    user_model = get_user_model()
    quote = connection.ops.quote_name
    token_fields = [f.attname for f in Token._meta.concrete_fields]
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    user_columns = [f.column for f in user_model._meta.concrete_fields]
    sql = (
        "SELECT " + ", ".join(
            [f"t.{quote(f.column)}" for f in Token._meta.concrete_fields] + [f"u.{quote(c)}" for c in user_columns]
        )
        + f" FROM {quote(Token._meta.db_table)} t JOIN {quote(user_model._meta.db_table)} u"
        f" ON u.{quote(user_model._meta.pk.column)} = t.{quote(Token._meta.get_field('user').column)}"
        f" WHERE t.{quote(Token._meta.pk.column)} = %s"
    )
    return sql, token_fields, user_fields


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's; the lookup without the ORM's query building."""

    def authenticate_credentials(self, key):
        if "\x00" in key:  # PostgreSQL text cannot hold NUL: no key has one (the ORM would raise a 500)
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        sql, token_fields, user_fields = _query()
        with connection.cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = get_user_model().from_db(connection.alias, user_fields, row[len(token_fields):])
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token = Token.from_db(connection.alias, token_fields, row[:len(token_fields)])
        token.user = user
        return user, token
