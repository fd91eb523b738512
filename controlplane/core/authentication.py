"""API authentication: a token, and the browser session for operators signed in to the admin.

Token authentication comes first because DRF builds a 401's `WWW-Authenticate` from the first
authenticator; a session alone has no challenge, and DRF turns a missing credential into 403.
"""
from __future__ import annotations

from controlplane.tenancy.authentication import TokenAuthentication as TenancyTokenAuthentication


class TokenAuthentication(TenancyTokenAuthentication):
    """`Authorization: Token <key>` (DRF's rules, its lookup in plain SQL); a 401 challenges with
    `WWW-Authenticate: Token realm="api"`."""

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
