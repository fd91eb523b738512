"""A database that refuses connections: the API answers 503 JSON with Retry-After, never a 500 page.

gunicorn serves the control plane (as in production) with DATABASE_URL pointing at a port where
nothing listens; the password in that URL must never reach a client, with DEBUG off or on.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from tests.web_server import free_port, gunicorn

PASSWORD = "hunter2-do-not-show"


@pytest.fixture(params=["0", "1"], ids=["debug-off", "debug-on"])
def server(request, tmp_path):
    closed_port = free_port()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLOWPLANE_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"postgres://flowplane:{PASSWORD}@127.0.0.1:{closed_port}/flowplane",
        "DEBUG": request.param, "SECRET_KEY": "unavailable-test-key-" + "x" * 40,
        "SECURE_SSL_REDIRECT": "0", "WEB_CONCURRENCY": "1", "WEB_THREADS": "2",
        "DATABASE_UNAVAILABLE_RETRY_AFTER_S": "7",
    }
    with gunicorn(env, tmp_path / "gunicorn.log") as url:
        yield url


def fetch(url: str, headers: dict[str, str] | None = None, data: bytes | None = None):
    request = urllib.request.Request(url, headers=headers or {}, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_api_answers_503_json_with_retry_after(server, method):
    data = json.dumps({"workflow": 1, "environment": "prod", "input": {}}).encode() if method == "POST" else None
    status, headers, body = fetch(f"{server}/api/v1/executions", {
        "Authorization": "Token 0123456789abcdef0123456789abcdef01234567", "Content-Type": "application/json",
    }, data)
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["error"] == "unavailable" and payload["path"] is None
    assert PASSWORD.encode() not in body


def test_a_page_answers_503_text_not_the_debug_page(server):
    status, headers, body = fetch(f"{server}/", {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"})
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert headers["Content-Type"].startswith("text/plain")
    assert PASSWORD.encode() not in body and b"Traceback" not in body


def test_static_files_need_no_database(server):
    # WhiteNoise answers before any view: from the app folders with DEBUG on (its finders), 404
    # with DEBUG off since nothing was collected into this fresh var/.
    status, _, body = fetch(f"{server}/static/admin/css/base.css")
    assert status in (200, 404) and PASSWORD.encode() not in body


def test_without_credentials_the_api_needs_no_database(server):
    status, _, body = fetch(f"{server}/api/v1/executions")
    assert status in (401, 403)
    assert json.loads(body)["error"] in {"not_authenticated", "forbidden"}


@pytest.mark.django_db(transaction=True)
def test_postgresql_refusing_connections_is_a_503_and_the_web_recovers(owner, tmp_path):
    """The production failure: PostgreSQL says "too many connections", then frees one.

    A role limited to one connection stands in for a server at max_connections: while the test
    holds that one connection, the web's attempt is refused; once it lets go, the web serves again.
    """
    import psycopg
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from tests.e2e.harness import database_url

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    token = Token.objects.create(user=owner).key
    role = f"fp_limited_{os.getpid()}"
    admin_url = database_url()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'create role "{role}" login connection limit 1')
        admin.execute(f'grant select, insert, update, delete on all tables in schema public to "{role}"')
        admin.execute(f'grant usage on all sequences in schema public to "{role}"')
    limited_url = admin_url.replace("postgres://postgres", f"postgres://{role}", 1)
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "FLOWPLANE_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": limited_url, "DATABASE_CONN_MAX_AGE": "0", "DEBUG": "0",
        "SECRET_KEY": "unavailable-test-key-" + "x" * 40, "SECURE_SSL_REDIRECT": "0",
        "WEB_CONCURRENCY": "1", "WEB_THREADS": "1",
    }
    headers = {"Authorization": f"Token {token}"}
    try:
        with gunicorn(env, tmp_path / "gunicorn.log") as base:
            url = f"{base}/api/v1/projects"
            status, _, _ = fetch(url, headers)
            assert status == 200
            with psycopg.connect(limited_url):  # the role's only connection: the web's is refused
                status, response_headers, body = fetch(url, headers)
                assert status == 503, body
                assert json.loads(body)["error"] == "unavailable" and "Retry-After" in response_headers
            status, _, _ = fetch(url, headers)
            assert status == 200, "the web serves again once the database accepts connections"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'drop owned by "{role}"')
            admin.execute(f'drop role if exists "{role}"')
