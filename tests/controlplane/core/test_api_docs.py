"""The API docs work without internet: every script, style and icon they load is served by us.

Static files are collected into a fresh STATIC_ROOT and served through WhiteNoise, as gunicorn
serves them in bin/run and in the image.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", interactive=False, verbosity=0)
    return root


@pytest.fixture
def collected(settings, static_root):
    settings.STATIC_ROOT = static_root
    return static_root


@pytest.fixture
def signed_in(owner, collected):
    client = Client()  # a new client loads the middleware, so WhiteNoise sees this STATIC_ROOT
    client.force_login(owner)
    return client


def assets_of(page: str) -> list[str]:
    return ASSET.findall(page)


@pytest.mark.parametrize("docs, expected", [
    ("/api/v1/schema/docs/", ["swagger-ui-bundle.js", "swagger-ui.css"]),
    ("/api/v1/schema/redoc/", ["redoc.standalone.js"]),
], ids=["swagger-ui", "redoc"])
def test_the_docs_load_only_local_assets_and_each_is_served(signed_in, docs, expected):
    page = signed_in.get(docs)
    assert page.status_code == 200
    html = page.content.decode()
    assert "https://" not in html and "http://" not in html, "the page refers to another site"
    assets = assets_of(html)
    for name in expected:
        assert any(a.endswith(name) for a in assets), (name, assets)
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.netloc and asset.startswith("/static/"), f"the docs load {asset} from elsewhere"
        served = signed_in.get(asset)
        assert served.status_code == 200, f"{asset} is not served ({served.status_code})"
        body = b"".join(served.streaming_content) if served.streaming else served.content
        assert len(body) > 100
        assert served.has_header("Cache-Control"), "WhiteNoise serves it, with caching headers"


def test_the_schema_the_docs_point_at_is_served(signed_in):
    page = signed_in.get("/api/v1/schema/docs/").content.decode()
    assert "/api/v1/schema/" in page
    schema = signed_in.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "Flowplane control plane API"


def test_admin_styles_are_served_with_debug_off(collected, settings):
    assert settings.DEBUG is False
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")


def test_an_unknown_static_file_is_a_404_not_a_listing(collected):
    assert Client().get("/static/drf_spectacular_sidecar/").status_code == 404
    assert Client().get("/static/../controlplane/settings.py").status_code == 404
