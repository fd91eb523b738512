"""API authentication: a token, and the browser session for operators signed in to the admin.

Token authentication comes first because DRF builds a 401's `WWW-Authenticate` from the first
authenticator; a session alone has no challenge, and DRF turns a missing credential into 403.
"""
from __future__ import annotations

from rest_framework.authentication import TokenAuthentication as DRFTokenAuthentication


class TokenAuthentication(DRFTokenAuthentication):
    """`Authorization: Token <key>`; a 401 challenges with `WWW-Authenticate: Token realm="api"`."""

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
