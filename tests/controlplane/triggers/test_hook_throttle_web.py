"""The webhook throttle counts across web processes: two gunicorn servers, one process each, on
the test database and the broker's Redis, receive one hook's deliveries in turn. Counted per
process (Django's local-memory cache, before), each would have let the rate through on its own."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack

import pytest
from django.conf import settings

from pipelines import signatures
from tests.e2e.harness import database_url
from tests.web_server import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)  # the servers must see the hook

RATE = 3


@pytest.fixture(autouse=True)
def _redis_cache():
    if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        pytest.skip("the shared count needs the Redis cache (bin/test runs on Redis)")


def ping(base: str, hook: dict) -> tuple[int, dict]:
    """A signed GitHub ping: accepted (202, ignored) and starts no run, so nothing is dispatched."""
    body = json.dumps({"zen": "keep it logically awesome"}).encode()
    request = urllib.request.Request(f"{base}{hook['url']}", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signatures.sign(hook["secret"], body)})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_two_web_processes_share_one_hooks_count(deploy, client_for, owner, tmp_path):
    from tests.controlplane.triggers.conftest import doc

    deployment = deploy(doc())
    hook = client_for(owner).post("/api/v1/webhooks", {"deployment": deployment.pk, "branch": "main"},
                                  format="json").json()
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "0", "WEB_CONCURRENCY": "1", "WEB_THREADS": "2",
           "HOOK_THROTTLE_RATE": f"{RATE}/min"}

    with ExitStack() as stack:
        servers = [stack.enter_context(gunicorn({**env, "FLOWPLANE_VAR_DIR": str(tmp_path / f"var{i}")},
                                                tmp_path / f"web{i}.log")) for i in range(2)]
        answers = [ping(servers[i % 2], hook) for i in range(2 * RATE)]

    assert [code for code, _ in answers] == [202] * RATE + [429] * RATE
    assert all(0 < int(headers["Retry-After"]) <= 60 for _, headers in answers[RATE:])
