"""The operator pages load nothing from another site: their style and script are collected and
served by WhiteNoise with DEBUG off, as gunicorn serves them in bin/run."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from tests.controlplane.core.test_api_docs import assets_of, collected, static_root  # noqa: F401  (fixtures)
from tests.controlplane.executions.builders import job, make_deployment
from tests.controlplane.web.runs import started

pytestmark = pytest.mark.django_db


def test_every_asset_of_the_pages_is_ours_and_served(owner, groups, project, collected):  # noqa: F811
    deployment = make_deployment(project, [job("a")], user=owner)
    running = started(deployment, user=owner)  # a running run's page also loads the polling script
    client = Client()
    client.force_login(owner)
    seen: set[str] = set()
    for url in (reverse("web:workflow-detail", args=[deployment.workflow_id]),
                reverse("web:execution-detail", args=[running.pk]), reverse("web:fleet")):
        html = client.get(url).content.decode()
        assert "https://" not in html and "http://" not in html, f"{url} refers to another site"
        seen.update(assets_of(html))
    assert {a.rsplit("/", 1)[-1] for a in seen} >= {"pages.css", "poll.js"}
    for asset in seen:
        assert not urlsplit(asset).netloc and asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200 and served.has_header("Cache-Control"), asset
